"""Fault suite ("nothing lost"): the real CLI under SIGKILL, flipped bytes, a faulty S3 and a full disk."""
