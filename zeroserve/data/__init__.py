"""The data room: readers for the course's data sets, their catalogue (`course`), and downloading them (`fetch`).

`readers` reads files and downloads nothing; `fetch` downloads; `course` says where each course model's
samples come from and does not import the registry back.
"""
