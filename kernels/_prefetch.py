"""A software prefetch for Numba kernels (LLVM's `llvm.prefetch`, which x86 lowers to `prefetcht0`).

Numba has no prefetch of its own. A scan whose hardware prefetcher does not run far enough ahead
(the kernel then waits on memory one cache line at a time) can ask for lines a few kilobytes ahead.
A prefetch never faults, but callers still keep it inside the array so that it reads nothing of
another object's memory.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, flat_index):
    """Hint that the cache line holding element `flat_index` of C-contiguous `arr` (counted over its
    flattened data) will be read soon. Compiles to one instruction; no bounds check."""
    if not isinstance(arr, types.Array) or not isinstance(flat_index, types.Integer):
        return None
    sig = types.void(arr, flat_index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [idx]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, rw=0 read, locality=3 keep in all cache levels, cache type=1 data)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen
