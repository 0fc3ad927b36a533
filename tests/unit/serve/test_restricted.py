"""Which APIs a zeroserve server restricts, the options that do it, and which calls get the run's key (no server)."""

from __future__ import annotations

from zeroserve.records.state import ServerState
from zeroserve.triton import restricted as R


def test_served_and_private_servers_restrict_their_apis_on_both_protocols():
    key = R.new_key()
    assert len(key) == 48 and key != R.new_key() and key.isalnum() and key.lower() == key
    assert R.restricted_apis("poll") == ("shared-memory", "logging", "trace")  # the index stays readable
    assert R.restricted_apis("explicit") == ("model-repository", "shared-memory", "logging", "trace")
    args = R.server_args(key, R.restricted_apis("poll"))
    assert args == [
        f"--http-restricted-api=shared-memory,logging,trace:zeroserve-key={key}",
        f"--grpc-restricted-protocol=shared-memory,logging,trace:zeroserve-key={key}",
    ]
    shown = " ".join(R.redact(["tritonserver", *args], key))
    assert key not in shown and shown.count(R.REDACTED) == 2


def _state(**fields) -> ServerState:
    """A state as a run writes it (where it listens) with `fields`."""
    where = {"run_id": "r", "pid": 1, "host": "127.0.0.1", "http_port": 1, "grpc_port": 2}
    return ServerState.model_validate({**where, **fields})


def test_the_key_goes_only_where_the_api_is_restricted_and_shm_only_when_allowed():
    state = _state(api_key="k", restricted_apis=list(R.restricted_apis("poll")), allow_client_shm=False)
    assert R.headers(state, R.MODEL_REPOSITORY, "http") == {}  # not restricted on a served server
    assert R.headers(state, R.SHARED_MEMORY, "http") == {}  # held back without --allow-client-shm
    assert R.client_shm_refusal(state, "127.0.0.1:8001").startswith(
        "--shared-memory system: the server at 127.0.0.1:8001 keeps"
    )
    allowed = state.updated(allow_client_shm=True)
    assert R.headers(allowed, R.SHARED_MEMORY, "http") == {"zeroserve-key": "k"}
    assert R.headers(allowed, R.SHARED_MEMORY, "grpc") == {"triton-grpc-protocol-zeroserve-key": "k"}
    assert R.client_shm_refusal(allowed, "u") is None
    private = _state(api_key="k", restricted_apis=list(R.restricted_apis("explicit")))
    assert R.headers(private, R.MODEL_REPOSITORY, "grpc") == {"triton-grpc-protocol-zeroserve-key": "k"}
    old = _state()  # a state written before keys: nothing restricted, nothing sent, nothing refused
    assert R.headers(old, R.SHARED_MEMORY, "http") == {} and R.client_shm_refusal(old, "u") is None
    shown = R.public(_state(api_key="k", a=1))
    assert R.headers(None, R.SHARED_MEMORY, "http") == {} and "api_key" not in shown and shown["a"] == 1
