"""Checkpoint input and output: header-only indexes, tensor reading, atomic sharded writing."""
