"""The app shell: the `zeroserve` command (`cli`), what every stage's CLI shares (`cliutil`), and `make demo`."""
