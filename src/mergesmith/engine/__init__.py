"""Plan -> tensors -> checkpoint: the streaming executor and the one write path.

    executor.py  Executor: computes every op of a plan (threads, dtypes, device, seeds)
    write.py     write_checkpoint: tensors + side files -> an atomic sharded checkpoint, used by
                 every command that writes a model; write_plan: a merge plan through it
"""
