"""``python -m callpool``: where the bundled binaries are."""

from ._supervise import find_binary

if __name__ == "__main__":
    for name in ("supervisor", "http-worker", "demo-api"):
        try:
            print(f"{name}: {find_binary(name)}")
        except FileNotFoundError as exc:
            print(exc)
