"""``python -m callpool.worker MODULE:FUNCTION``: a Python function as a
callpool worker. The implementation, and its documentation, is in
``callpool._worker`` (``callpool.serve``); this module is the command."""

from ._worker import Retry, call_with_args, load, main, serve

__all__ = ["serve", "load", "Retry", "call_with_args", "main"]

if __name__ == "__main__":
    main()
