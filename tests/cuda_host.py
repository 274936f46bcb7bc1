"""Run the CUDA kernels of kernels/*.cu on the CPU, for tests on machines without a GPU.

    from pathlib import Path
    import numpy as np
    from cuda_host import HostModule, KernelError      # tests/ is on sys.path under pytest

    mod = HostModule(Path("kernels/pool.cu"))          # g++ build, cached per process and on disk
    mod.names                                          # ['pool_fwd<float>', 'pool_fwd<double>', ...]
    y = np.full((C, OH, OW, N), np.nan, np.float32)    # NumPy arrays stand for device memory
    mod.launch("pool_fwd<float>", grid, block, (x, y, N, C, size), "ppiii", shmem=0)
    # y now holds what the kernel wrote; any fault raises KernelError naming block, thread and line

``grid`` and ``block`` are ints or tuples of up to 3 ints, ``shmem`` the bytes of dynamic shared memory.
``args`` has one entry per kernel parameter and ``sig`` one letter per entry: ``p`` a C-contiguous NumPy
array (passed by pointer and written in place; ``None`` passes a null pointer), ``i`` int32, ``l``
int64, ``f`` (or ``F``) float32, ``d`` float64 (scalars are converted to that exact C type). The
letters, each array's dtype and its alignment (e.g. 16 bytes for a ``float4*`` parameter) are checked
against the compiled kernel's own parameter types. Kernel names are the explicit template
instantiations of the file (``pyconvnet.cuda.loader.entry_points``) and plain ``extern "C" __global__``
kernels; ``mod.signature(name)`` gives the letters a kernel takes.

How it runs. The .cu file is compiled unchanged by the host C++ compiler (g++ -O1, debug line tables)
after a shim (CUDA qualifiers, built-in variables, vector types, device math, atomics, warp intrinsics);
builds are cached in ~/.cache/pyconvnet/cuda_host. Blocks run one after another. The threads of a block
run as fibers, each with its own stack, switched only where CUDA threads wait for each other:
``__syncthreads`` (and ``_count/_and/_or``), the warp intrinsics (``__shfl*_sync``, ``__ballot_sync``,
``__any/__all_sync``, ``__match_*_sync``, ``__reduce_*_sync``, ``__syncwarp``) and ``__nanosleep``. So
every thread runs until it blocks: code that lacks a barrier usually reads stale or poisoned data and
fails its test, and ``schedule="reverse"`` or ``"random"`` changes the order of threads (and blocks) to
flush out races the default order hides. Threads that return count as arrived at later barriers and
drop out of warp masks (a lane reading one of them gets poison). Every lane named in a warp intrinsic's
mask must call the same intrinsic with the same mask (checked while both wait). Atomics are plain
read-modify-writes (nothing runs concurrently).

What it checks (each raises KernelError naming the kernel and, where it applies, the block, the
thread, the source line and the argument):
- out-of-bounds accesses (``guard=True``, the default): each array is copied into a shared buffer at an
  address with the same alignment modulo 256 as the original, with poison-filled bytes on both sides
  (less than 256 after it, up to a page before it) and then 64 KiB of inaccessible memory. A write into
  the poison is reported after the launch with the element indices; an access further out faults at
  once and is reported with the element index and the source line. Reads of the poison return NaN
  (float and double), which makes results fail.
- dynamic shared memory is ``shmem`` bytes, no more: accesses past it fault or are reported;
- shared memory (static and dynamic) is poisoned at the start of every block and uninitialised local
  variables are filled with a pattern (g++ -ftrivial-auto-var-init), so forgotten initialisation shows;
- deadlocks (threads waiting in barriers or warp intrinsics that can never complete) name who waits where;
- crashes (SIGSEGV, SIGFPE, ...) and endless loops: each launch runs in a forked child process
  (``isolate=True``) that is killed after ``timeout`` seconds; ``isolate=False`` runs in-process
  (faster, usable under gdb, but a crash ends the Python process and an endless loop hangs it). In a
  child, what a kernel writes to ``__device__`` globals does not outlive the launch.
- device limits: block <= 1024 threads, ``__launch_bounds__``, grid sizes, shmem <= 227 KiB; ``assert``
  and ``__trap`` in kernel code.

Not emulated: inline PTX asm, textures and surfaces, cooperative groups, __half/bfloat16, thread block
clusters, host-side CUDA API calls; float rounding follows the host (no FMA contraction), and the
``_rz/_ru/_rd`` intrinsics round to nearest. Speed: about 0.2 us per thread per barrier or warp
intrinsic and about 8 ms per isolated launch; keep grids to a few hundred blocks.
"""
from __future__ import annotations

import ctypes
import hashlib
import mmap
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from pyconvnet.cuda.loader import entry_points

__all__ = ["HostModule", "KernelError", "CompileError", "compiler", "SCHEDULES"]

SCHEDULES = ("forward", "reverse", "random")
POISON = 0x7FF8DEAD                 # every aligned float32/float64 made of it is NaN
DYN_SHARED_MAX = 232448             # 227 KiB: the most dynamic shared memory an sm_90 block may have
STACK_KIB = 128                     # per emulated thread
_PAGE = mmap.PAGESIZE
_GAP = 16 * _PAGE                   # inaccessible bytes between the arrays' copies (guard=True)
_RC = {0: "ok", 1: "fail", 2: "deadlock", 3: "crash", 4: "timeout"}
_SIGNALS = {4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV",
            31: "SIGSYS"}
_SIG_LETTERS = {"p": "a pointer (NumPy array)", "i": "int32", "l": "int64", "f": "float32", "d": "float64",
                "F": "float32"}   # F: launch.Kernel's "always float32" letter
# compiled parameter codes -> the sig letter that passes them
_PARAM_LETTER = {"p": "p", "i": "i", "I": "i", "l": "l", "L": "l", "f": "f", "d": "d"}
_ALIAS = {"F": "f"}
_PARAM_CTYPE = {"p": "pointer", "i": "int", "I": "unsigned int", "l": "long long", "L": "unsigned long long",
                "f": "float", "d": "double", "?": "a type the emulator cannot pass"}
# pointee codes -> NumPy dtypes an array passed for it may have (None: any)
_POINTEE_DTYPES = {"f": ("float32",), "d": ("float64",), "i": ("int32", "uint32"), "I": ("int32", "uint32"),
                   "l": ("int64", "uint64"), "L": ("int64", "uint64"), "s": ("int16", "uint16", "float16")}
_POINTEE_CTYPE = {"f": "float", "d": "double", "i": "int", "I": "unsigned int", "l": "long long",
                  "L": "unsigned long long", "s": "a 2-byte type"}
_LOCK = threading.RLock()


class CompileError(RuntimeError):
    """The host compiler rejected a kernel file (the message holds its diagnostics)."""


class KernelError(RuntimeError):
    """An emulated launch went wrong: a fault, an out-of-bounds write, a deadlock, a timeout, a failed
    ``assert``/``__trap``, or a launch configuration the GPU would refuse."""


# --------------------------------------------------------------------------------------------------
# The C++ emitted around the kernel source: runtime (fibers, scheduler, isolation), then the CUDA shim.

_RUNTIME = r"""
// ===== pyconvnet host emulator (generated by tests/cuda_host.py): runtime ==========================
#include <math.h>
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <errno.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>
#include <poll.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <limits>
#include <type_traits>
#include <utility>
#if !defined(__x86_64__) && !defined(PCN_EMU_UCONTEXT)
#define PCN_EMU_UCONTEXT 1
#endif
#define PCN_API extern "C" __attribute__((visibility("default")))

namespace pcn_emu {
template <class T> struct elem { using type = T; };      // element type of a CUDA vector type
}
/*@VECTORS@*/
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace pcn_emu {

enum { RC_OK = 0, RC_FAIL = 1, RC_DEADLOCK = 2, RC_CRASH = 3, RC_TIMEOUT = 4 };
enum { W_SYNC, W_SHFL, W_UP, W_DOWN, W_XOR, W_BALLOT, W_ANY, W_ALL, W_MATCH_ANY, W_MATCH_ALL,
       W_RADD, W_RMIN, W_RMAX, W_RUMIN, W_RUMAX, W_RAND, W_ROR, W_RXOR };
static const char* const WNAME[] = {
    "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
    "__any_sync", "__all_sync", "__match_any_sync", "__match_all_sync", "__reduce_add_sync",
    "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync",
    "__reduce_or_sync", "__reduce_xor_sync"};
static const char* const BNAME[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                    "__syncthreads_or"};

struct Status {  // shared with the Python side (cuda_host._Status): keep the same layout
    int32_t rc, sig, sigcode, access, where, in_kernel;
    uint32_t block[3], thread[3];
    uint64_t addr, pc, blocks_done, nblocks;
    char msg[4000];
};
static_assert(sizeof(Status) == 4080, "Status layout");

enum { F_READY, F_RUN, F_BAR, F_WARP, F_DONE };
struct Fiber {
    void* sp;
    unsigned tid;
    uint3 idx;
    int state, kind, param, width, size;
    unsigned mask;
    long long ires;
    const char* file;
    int line;
    alignas(16) unsigned char val[16];
    alignas(16) unsigned char res[16];
#ifdef PCN_EMU_UCONTEXT
    ucontext_t uc;
#endif
};
struct Group { unsigned mask, arrived; int kind, width, size; };
struct Warp { unsigned alive, groups; Group g[32]; };
struct Entry {
    void* fn;
    void (*call)(void*, void**);
    const char* sig;
    const char* pointee;
    const char* align;
    const char* name;
};
struct Shared { unsigned char* p; size_t n; };

static const unsigned MAX_THREADS = 1024;
static const size_t PAGE = 4096, STACK = /*@STACK_KIB@*/ * 1024, SLOT = STACK + PAGE;
static const size_t DYN_MAX = /*@DYN_SHARED_MAX@*/;
static const size_t DYN_SPAN = ((DYN_MAX + PAGE - 1) / PAGE + 1) * PAGE;  // the last page: never accessible
static const uint32_t POISON = /*@POISON@*/u;
alignas(4096) unsigned char dyn_shared[DYN_SPAN];

struct State {
    const Entry* entry;
    void** args;
    Fiber* fibers;
    Warp* warps;
    unsigned* queue;
    unsigned nthreads, nwarps, live, qhead, qlen, bar_arrived, bar_pred;
    Fiber* cur;
    void* sched_sp;
#ifdef PCN_EMU_UCONTEXT
    ucontext_t sched_uc, proto_uc;
#endif
    int schedule;
    uint64_t rng;
    Status* st;
    bool failed, running;
    unsigned char* stacks;
    unsigned stacks_ready;
    size_t shmem;
    Shared shared[512];
    unsigned nshared;
    unsigned order[MAX_THREADS];
};
static State S;

// ---- poison, messages ---------------------------------------------------------------------------
static void poison(void* p, size_t n) {  // the byte at address a gets byte (a % 4) of POISON
    unsigned char* b = static_cast<unsigned char*>(p);
    unsigned char* e = b + n;
    while (b < e && (reinterpret_cast<uintptr_t>(b) & 3)) {
        *b = (unsigned char)(POISON >> (8 * (reinterpret_cast<uintptr_t>(b) & 3)));
        ++b;
    }
    for (; b + 4 <= e; b += 4) memcpy(b, &POISON, 4);
    for (; b < e; ++b) *b = (unsigned char)(POISON >> (8 * (reinterpret_cast<uintptr_t>(b) & 3)));
}
static bool poisoned(const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i)
        if (b[i] != (unsigned char)(POISON >> (8 * ((reinterpret_cast<uintptr_t>(b) + i) & 3)))) return false;
    return true;
}
static void vmsgf(const char* fmt, va_list ap) {
    size_t n = strlen(S.st->msg);
    if (n + 1 < sizeof(S.st->msg)) vsnprintf(S.st->msg + n, sizeof(S.st->msg) - n, fmt, ap);
}
static void msgf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsgf(fmt, ap);
    va_end(ap);
}
static void msg_ranges(const bool* in, unsigned n, unsigned base) {  // "0-31, 64"
    bool first = true;
    for (unsigned i = 0; i < n;) {
        if (!in[i]) { ++i; continue; }
        unsigned j = i;
        while (j + 1 < n && in[j + 1]) ++j;
        msgf(first ? "%u" : ", %u", base + i);
        if (j > i) msgf("-%u", base + j);
        first = false;
        i = j + 1;
    }
}
static void msg_lanes(unsigned mask) {
    bool in[32];
    for (unsigned l = 0; l < 32; ++l) in[l] = (mask >> l) & 1;
    msg_ranges(in, 32, 0);
}
static void msg_where() {
    Fiber* f = S.cur;
    msgf("block (%u, %u, %u) thread (%u, %u, %u): ", blockIdx.x, blockIdx.y, blockIdx.z, f->idx.x, f->idx.y,
         f->idx.z);
}

// ---- context switches ---------------------------------------------------------------------------
#ifndef PCN_EMU_UCONTEXT
extern "C" void pcn_emu_switch(void** save, void* to);
extern "C" void pcn_emu_start();
asm(R"(
    .pushsection .text
    .globl pcn_emu_switch
    .hidden pcn_emu_switch
    .type pcn_emu_switch, @function
pcn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size pcn_emu_switch, .-pcn_emu_switch
    .globl pcn_emu_start
    .hidden pcn_emu_start
    .type pcn_emu_start, @function
pcn_emu_start:
    movq %rbx, %rdi
    callq *%r12
    ud2
    .size pcn_emu_start, .-pcn_emu_start
    .popsection
)");
#endif
static void to_sched() {
#ifdef PCN_EMU_UCONTEXT
    swapcontext(&S.cur->uc, &S.sched_uc);
#else
    pcn_emu_switch(&S.cur->sp, S.sched_sp);
#endif
}
static void to_fiber(Fiber* f) {
#ifdef PCN_EMU_UCONTEXT
    swapcontext(&S.sched_uc, &f->uc);
#else
    pcn_emu_switch(&S.sched_sp, f->sp);
#endif
}

// ---- failures raised by kernel code -------------------------------------------------------------
[[noreturn]] static void die() {  // back to the scheduler for good (the launch stops)
    S.failed = true;
    to_sched();
    __builtin_unreachable();
}
[[noreturn]] static void kernel_fail(const char* file, int line, const char* fmt, ...) {
    if (!S.failed) {
        S.st->rc = RC_FAIL;
        msg_where();
        va_list ap;
        va_start(ap, fmt);
        vmsgf(fmt, ap);
        va_end(ap);
        if (file) msgf(" (%s:%d)", file, line);
    }
    die();
}
[[noreturn]] void assert_fail(const char* expr, const char* file, int line) {
    kernel_fail(file, line, "assertion failed: %s", expr);
}
[[noreturn]] void trap(const char* what, const char* file, int line) { kernel_fail(file, line, "%s called", what); }

// ---- run queue ----------------------------------------------------------------------------------
static uint64_t rnd() {
    uint64_t x = S.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    S.rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}
static void push_ordered(unsigned* ids, unsigned n) {  // make runnable, in the schedule's order
    if (S.schedule == 1) {
        for (unsigned i = 0; i < n / 2; ++i) std::swap(ids[i], ids[n - 1 - i]);
    } else if (S.schedule == 2) {
        for (unsigned i = n; i > 1; --i) std::swap(ids[i - 1], ids[rnd() % i]);
    }
    for (unsigned i = 0; i < n; ++i) {
        S.queue[(S.qhead + S.qlen++) % MAX_THREADS] = ids[i];
        S.fibers[ids[i]].state = F_READY;
    }
}

// ---- __syncthreads ------------------------------------------------------------------------------
static void release_barrier() {
    unsigned n = 0, arrived = S.bar_arrived, pred = S.bar_pred;
    for (unsigned t = 0; t < S.nthreads; ++t) {
        Fiber* f = &S.fibers[t];
        if (f->state != F_BAR) continue;
        f->ires = f->kind == 1 ? pred : f->kind == 2 ? (pred == arrived) : f->kind == 3 ? (pred != 0) : 0;
        S.order[n++] = t;
    }
    S.bar_arrived = S.bar_pred = 0;
    push_ordered(S.order, n);
}
int barrier(int kind, int pred, const char* file, int line) {
    Fiber* f = S.cur;
    f->state = F_BAR;
    f->kind = kind;
    f->file = file;
    f->line = line;
    ++S.bar_arrived;
    if (pred) ++S.bar_pred;
    if (S.bar_arrived == S.live) release_barrier();
    to_sched();
    return (int)f->ires;
}

// ---- warp intrinsics ----------------------------------------------------------------------------
static void complete_group(unsigned w, unsigned leader) {
    Warp& W = S.warps[w];
    const Group g = W.g[leader];
    W.groups &= ~(1u << leader);
    Fiber* lane0 = &S.fibers[w * 32];
    const unsigned P = g.arrived;
    unsigned ballot = 0, red = 0;
    bool first = true;
    for (unsigned l = 0; l < 32; ++l) {
        if (!((P >> l) & 1)) continue;
        Fiber* f = &lane0[l];
        if (f->param) ballot |= 1u << l;
        uint32_t v;
        memcpy(&v, f->val, 4);
        if (first) red = v;
        else switch (g.kind) {
            case W_RADD: red += v; break;
            case W_RMIN: red = (int32_t)v < (int32_t)red ? v : red; break;
            case W_RMAX: red = (int32_t)v > (int32_t)red ? v : red; break;
            case W_RUMIN: red = v < red ? v : red; break;
            case W_RUMAX: red = v > red ? v : red; break;
            case W_RAND: red &= v; break;
            case W_ROR: red |= v; break;
            case W_RXOR: red ^= v; break;
            default: break;
        }
        first = false;
    }
    unsigned n = 0;
    for (unsigned l = 0; l < 32; ++l) {
        if (!((P >> l) & 1)) continue;
        Fiber* f = &lane0[l];
        const unsigned wd = (unsigned)g.width, seg = l & ~(wd - 1), in_seg = l & (wd - 1);
        const unsigned p = (unsigned)f->param;
        long long src = l;
        switch (g.kind) {
        case W_SHFL: src = seg + (p & (wd - 1)); break;
        case W_UP: src = in_seg >= p ? (long long)l - p : l; break;
        case W_DOWN: src = (unsigned long long)in_seg + p < wd ? (long long)l + p : l; break;
        case W_XOR: src = l ^ p; if (src >= (long long)(seg + wd)) src = l; break;
        case W_BALLOT: f->ires = ballot; break;
        case W_ANY: f->ires = ballot != 0; break;
        case W_ALL: f->ires = ballot == P; break;
        case W_MATCH_ANY:
        case W_MATCH_ALL: {
            unsigned m = 0;
            for (unsigned k = 0; k < 32; ++k)
                if (((P >> k) & 1) && !memcmp(lane0[k].val, f->val, (size_t)g.size)) m |= 1u << k;
            f->ires = g.kind == W_MATCH_ANY ? m : (m == P ? P : 0);
            break;
        }
        default: f->ires = red; break;
        }
        if (g.kind >= W_SHFL && g.kind <= W_XOR) {
            if (src >= 0 && src < 32 && ((P >> src) & 1)) memcpy(f->res, lane0[src].val, (size_t)g.size);
            else poison(f->res, (size_t)g.size);  // the source lane does not take part: undefined on a GPU
        }
        S.order[n++] = w * 32 + l;
    }
    push_ordered(S.order, n);
}
static void try_complete(unsigned w, unsigned leader) {
    Warp& W = S.warps[w];
    const unsigned need = W.g[leader].mask & W.alive;
    if ((W.g[leader].arrived & need) == need) complete_group(w, leader);
}
long long warp_op(int kind, unsigned mask, const void* val, int size, int param, int width, void* res,
                  const char* file, int line) {
    Fiber* f = S.cur;
    const unsigned lane = f->tid & 31, w = f->tid >> 5;
    if (!((mask >> lane) & 1))
        kernel_fail(file, line, "%s(mask 0x%08x, ...) called by lane %u, which is not in the mask", WNAME[kind],
                    mask, lane);
    if (width < 1 || width > 32 || (width & (width - 1)))
        kernel_fail(file, line, "%s: width %d is not a power of 2 in [1, 32]", WNAME[kind], width);
    Warp& W = S.warps[w];
    unsigned leader = 32;
    for (unsigned gl = W.groups; gl; gl &= gl - 1) {
        const unsigned l = (unsigned)__builtin_ctz(gl);
        const Group& g = W.g[l];
        if (!(g.mask & mask)) continue;
        if (g.mask != mask || g.kind != kind || g.size != size || g.width != width) {
            const Fiber* o = &S.fibers[w * 32 + (unsigned)__builtin_ctz(g.arrived)];
            if (!S.failed) {
                S.st->rc = RC_FAIL;
                msg_where();
                msgf("warp %u: lane %u calls %s(mask 0x%08x, width %d) at %s:%d while lanes ", w, lane, WNAME[kind],
                     mask, width, file, line);
                msg_lanes(g.arrived);
                msgf(" wait in %s(mask 0x%08x, width %d) at %s:%d; every lane named in a mask must call the same "
                     "intrinsic with the same mask", WNAME[g.kind], g.mask, g.width, o->file, o->line);
            }
            die();
        }
        leader = l;
        break;
    }
    if (leader == 32) {
        leader = (unsigned)__builtin_ctz(mask);
        W.g[leader] = Group{mask, 0u, kind, width, size};
        W.groups |= 1u << leader;
    }
    if (size) memcpy(f->val, val, (size_t)size);
    f->param = param;
    f->kind = kind;
    f->mask = mask;
    f->file = file;
    f->line = line;
    f->state = F_WARP;
    W.g[leader].arrived |= 1u << lane;
    try_complete(w, leader);
    to_sched();
    if (res && size) memcpy(res, f->res, (size_t)size);
    return f->ires;
}
unsigned activemask() { return S.warps[S.cur->tid >> 5].alive; }
void yield() {
    unsigned t = S.cur->tid;
    push_ordered(&t, 1);
    to_sched();
}

// ---- shared memory registry: poisoned at the start of every block ---------------------------------
void touch_shared(unsigned char* p, size_t n) {
    for (unsigned i = 0; i < S.nshared; ++i)
        if (S.shared[i].p == p) return;
    if (S.nshared == sizeof(S.shared) / sizeof(S.shared[0])) return;  // too many: this one is not poisoned
    S.shared[S.nshared++] = Shared{p, n};
    if (S.running) poison(p, n);  // first use in this block: no thread has written it yet
}
struct SharedTouch {
    SharedTouch(const volatile void* p, size_t n) {
        touch_shared(static_cast<unsigned char*>(const_cast<void*>(p)), n);
    }
};

// ---- threads ------------------------------------------------------------------------------------
static void thread_exit() {
    Fiber* f = S.cur;
    f->state = F_DONE;
    --S.live;
    const unsigned w = f->tid >> 5;
    Warp& W = S.warps[w];
    W.alive &= ~(1u << (f->tid & 31));
    for (unsigned gl = W.groups; gl; gl &= gl - 1) try_complete(w, (unsigned)__builtin_ctz(gl));
    if (S.bar_arrived && S.bar_arrived == S.live) release_barrier();
    to_sched();
    __builtin_unreachable();
}
extern "C" void pcn_emu_fiber_main(void*) {
    S.entry->call(S.entry->fn, S.args);
    thread_exit();
}
#ifdef PCN_EMU_UCONTEXT
static void uc_main() { pcn_emu_fiber_main(nullptr); }
#endif
static void start_fiber(Fiber* f) {
    unsigned char* base = S.stacks + (size_t)f->tid * SLOT + PAGE;  // above its inaccessible guard page
#ifdef PCN_EMU_UCONTEXT
    f->uc = S.proto_uc;
    f->uc.uc_stack.ss_sp = base;
    f->uc.uc_stack.ss_size = STACK;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, uc_main, 0);
#else
    uintptr_t top = reinterpret_cast<uintptr_t>(base + STACK) & ~(uintptr_t)15;
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 72);  // r15 r14 r13 r12 rbx rbp, return address, pad
    sp[0] = sp[1] = sp[2] = sp[4] = sp[5] = sp[7] = sp[8] = 0;
    sp[3] = reinterpret_cast<uint64_t>(&pcn_emu_fiber_main);
    sp[6] = reinterpret_cast<uint64_t>(&pcn_emu_start);
    f->sp = sp;
#endif
}
static bool ensure_threads(unsigned n) {
    if (!S.fibers) {
        S.fibers = static_cast<Fiber*>(calloc(MAX_THREADS, sizeof(Fiber)));
        S.warps = static_cast<Warp*>(calloc(MAX_THREADS / 32, sizeof(Warp)));
        S.queue = static_cast<unsigned*>(calloc(MAX_THREADS, sizeof(unsigned)));
        void* m = mmap(nullptr, MAX_THREADS * SLOT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (!S.fibers || !S.warps || !S.queue || m == MAP_FAILED) return false;
        S.stacks = static_cast<unsigned char*>(m);
#ifdef PCN_EMU_UCONTEXT
        getcontext(&S.proto_uc);
#endif
    }
    for (; S.stacks_ready < n; ++S.stacks_ready)
        if (mprotect(S.stacks + (size_t)S.stacks_ready * SLOT + PAGE, STACK, PROT_READ | PROT_WRITE)) return false;
    return true;
}

// ---- one block ----------------------------------------------------------------------------------
static void deadlock_report() {
    static bool in[MAX_THREADS];
    S.st->rc = RC_DEADLOCK;
    msgf("deadlock in block (%u, %u, %u): %u of %u threads wait forever.", blockIdx.x, blockIdx.y, blockIdx.z,
         S.live, S.nthreads);
    for (unsigned t = 0; t < S.nthreads; ++t) {  // barrier waiters, by source line
        Fiber* f = &S.fibers[t];
        if (f->state != F_BAR) continue;
        bool seen = false;
        for (unsigned u = 0; u < t && !seen; ++u)
            seen = S.fibers[u].state == F_BAR && S.fibers[u].line == f->line && S.fibers[u].file == f->file;
        if (seen) continue;
        for (unsigned u = 0; u < S.nthreads; ++u)
            in[u] = S.fibers[u].state == F_BAR && S.fibers[u].line == f->line && S.fibers[u].file == f->file;
        msgf(" Threads ");
        msg_ranges(in, S.nthreads, 0);
        msgf(" wait in %s at %s:%d (%u of %u live threads arrived).", BNAME[f->kind], f->file, f->line,
             S.bar_arrived, S.live);
    }
    for (unsigned w = 0; w < S.nwarps; ++w) {
        Warp& W = S.warps[w];
        for (unsigned gl = W.groups; gl; gl &= gl - 1) {
            const Group& g = W.g[__builtin_ctz(gl)];
            const Fiber* o = &S.fibers[w * 32 + (unsigned)__builtin_ctz(g.arrived)];
            msgf(" Warp %u (threads %u-%u): lanes ", w, w * 32, w * 32 + 31);
            msg_lanes(g.arrived);
            msgf(" wait in %s(mask 0x%08x) at %s:%d for lanes ", WNAME[g.kind], g.mask, o->file, o->line);
            msg_lanes(g.mask & W.alive & ~g.arrived);
            msgf(".");
        }
    }
    msgf(" (Threads that return count as arrived; a barrier or warp intrinsic that only some threads reach "
         "never completes.)");
}
static void run_block(uint3 b) {
    blockIdx = b;
    S.st->block[0] = b.x;
    S.st->block[1] = b.y;
    S.st->block[2] = b.z;
    for (unsigned i = 0; i < S.nshared; ++i) poison(S.shared[i].p, S.shared[i].n);
    poison(dyn_shared, S.shmem);
    const unsigned n = S.nthreads, bx = blockDim.x, bxy = blockDim.x * blockDim.y;
    S.live = n;
    S.bar_arrived = S.bar_pred = 0;
    S.qhead = S.qlen = 0;
    for (unsigned w = 0; w < S.nwarps; ++w) {
        const unsigned lanes = n - w * 32 >= 32 ? 32 : n - w * 32;
        S.warps[w].alive = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        S.warps[w].groups = 0;
    }
    for (unsigned t = 0; t < n; ++t) {
        Fiber* f = &S.fibers[t];
        f->tid = t;
        f->idx = uint3{t % bx, (t % bxy) / bx, t / bxy};
        f->file = "";
        f->line = 0;
        start_fiber(f);
        S.order[t] = t;
    }
    push_ordered(S.order, n);
    S.running = true;
    while (S.qlen && !S.failed) {
        const unsigned t = S.queue[S.qhead];
        S.qhead = (S.qhead + 1) % MAX_THREADS;
        --S.qlen;
        Fiber* f = &S.fibers[t];
        f->state = F_RUN;
        S.cur = f;
        threadIdx = f->idx;
        S.st->thread[0] = f->idx.x;
        S.st->thread[1] = f->idx.y;
        S.st->thread[2] = f->idx.z;
        S.st->in_kernel = 1;
        to_fiber(f);
        S.st->in_kernel = 0;
    }
    S.running = false;
    if (S.failed) return;
    S.cur = nullptr;
    if (S.live) {
        deadlock_report();
        S.failed = true;
        return;
    }
    const size_t end = (S.shmem + PAGE - 1) / PAGE * PAGE;
    for (size_t i = S.shmem; i < end; ++i) {
        if (poisoned(dyn_shared + i, 1)) continue;
        S.st->rc = RC_FAIL;
        msgf("block (%u, %u, %u) wrote byte %zu of dynamic shared memory, past the %zu bytes the launch gave "
             "(shmem)", b.x, b.y, b.z, i, S.shmem);
        S.failed = true;
        return;
    }
}

static uint64_t gcd(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}
static int launch(const Entry* e, void** args, const unsigned* g, const unsigned* b, uint64_t shmem, int schedule,
                  uint64_t seed, Status* st) {
    S.st = st;
    S.entry = e;
    S.args = args;
    S.failed = S.running = false;
    S.cur = nullptr;
    const unsigned n = b[0] * b[1] * b[2];
    if (!ensure_threads(n)) {
        st->rc = RC_FAIL;
        msgf("cannot allocate %u emulated thread stacks of %zu KiB", n, STACK / 1024);
        return st->rc;
    }
    gridDim = dim3(g[0], g[1], g[2]);
    blockDim = dim3(b[0], b[1], b[2]);
    S.nthreads = n;
    S.nwarps = (n + 31) / 32;
    S.shmem = shmem;
    S.schedule = schedule;
    S.rng = (seed + 1) * 0x9E3779B97F4A7C15ULL | 1;
    const size_t usable = (shmem + PAGE - 1) / PAGE * PAGE;
    mprotect(dyn_shared, DYN_SPAN, PROT_READ | PROT_WRITE);
    poison(dyn_shared + shmem, usable - shmem);
    mprotect(dyn_shared + usable, DYN_SPAN - usable, PROT_NONE);
    const uint64_t nb = (uint64_t)g[0] * g[1] * g[2];
    st->nblocks = nb;
    uint64_t a = 1, c = 0;  // block i runs the affine permutation's (a * i + c) % nb
    if (schedule == 2 && nb > 1) {
        do a = rnd() % nb; while (a == 0 || gcd(a, nb) != 1);
        c = rnd() % nb;
    }
    for (uint64_t i = 0; i < nb && !S.failed; ++i) {
        uint64_t k = schedule == 1 ? nb - 1 - i : (uint64_t)(((unsigned __int128)a * i + c) % nb);
        run_block(uint3{(unsigned)(k % g[0]), (unsigned)(k / g[0] % g[1]), (unsigned)(k / g[0] / g[1])});
        st->blocks_done = i + 1;
    }
    mprotect(dyn_shared, DYN_SPAN, PROT_READ | PROT_WRITE);
    return st->rc;
}

// ---- isolation: one forked child per launch ----------------------------------------------------
static void on_crash(int sig, siginfo_t* si, void* ctx) {
    Status* st = S.st;
    st->rc = RC_CRASH;
    st->sig = sig;
    st->sigcode = si->si_code;
    st->addr = reinterpret_cast<uint64_t>(si->si_addr);
    const uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr);
    const uintptr_t d = reinterpret_cast<uintptr_t>(dyn_shared);
    const uintptr_t s = reinterpret_cast<uintptr_t>(S.stacks);
    st->where = a >= d && a < d + DYN_SPAN ? 1 : (S.stacks && a >= s && a < s + MAX_THREADS * SLOT) ? 2 : 3;
#if defined(__x86_64__)
    const ucontext_t* uc = static_cast<const ucontext_t*>(ctx);
    if (sig == SIGSEGV && uc->uc_mcontext.gregs[REG_TRAPNO] == 14)  // a page fault: was it a write?
        st->access = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 2 : 1;
    const uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    Dl_info me, at;
    if (dladdr(reinterpret_cast<void*>(&on_crash), &me) && dladdr(reinterpret_cast<void*>(pc), &at) &&
        me.dli_fbase == at.dli_fbase)
        st->pc = pc - reinterpret_cast<uintptr_t>(me.dli_fbase);
#endif
    _exit(RC_CRASH);
}
static double now() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int launch_isolated(const Entry* e, void** args, const unsigned* g, const unsigned* b, uint64_t shmem,
                           int schedule, uint64_t seed, Status* st, double timeout) {
    S.st = st;
    if (!ensure_threads(b[0] * b[1] * b[2])) return launch(e, args, g, b, shmem, schedule, seed, st);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) {
        st->rc = RC_FAIL;
        msgf("pipe2 failed: %s", strerror(errno));
        return st->rc;
    }
    fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        st->rc = RC_FAIL;
        msgf("fork failed: %s", strerror(errno));
        return st->rc;
    }
    if (pid == 0) {
        close(fds[0]);
        static char altstack[1 << 16];
        stack_t ss = {};
        ss.ss_sp = altstack;
        ss.ss_size = sizeof altstack;
        sigaltstack(&ss, nullptr);
        struct sigaction sa = {};
        sa.sa_sigaction = on_crash;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
        for (int sg : sigs) sigaction(sg, &sa, nullptr);
        const int rc = launch(e, args, g, b, shmem, schedule, seed, st);
        fflush(nullptr);
        _exit(rc);
    }
    close(fds[1]);
    const double t0 = now();
    bool timed_out = false;
    for (;;) {
        const double left = timeout - (now() - t0);
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd p = {fds[0], POLLIN, 0};
        const int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0) break;  // the child has exited (its end of the pipe closed)
        if (r < 0 && errno != EINTR) break;
    }
    close(fds[0]);
    if (timed_out) kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        st->rc = RC_TIMEOUT;
    } else if (WIFSIGNALED(ws) && st->rc != RC_CRASH) {
        st->rc = RC_CRASH;
        st->sig = WTERMSIG(ws);
        st->where = 0;
    } else if (WIFEXITED(ws) && WEXITSTATUS(ws) != st->rc && st->rc == RC_OK) {
        st->rc = RC_FAIL;
        msgf("the emulation process exited with status %d", WEXITSTATUS(ws));
    }
    return st->rc;
}

// ---- calling a kernel through void** args, like cudaLaunchKernel --------------------------------
template <class... A, size_t... I>
static void call_impl(void* f, void** a, std::index_sequence<I...>) {
    reinterpret_cast<void (*)(A...)>(f)(*static_cast<typename std::remove_reference<A>::type*>(a[I])...);
}
template <class... A>
static void call(void* f, void** a) {
    call_impl<A...>(f, a, std::index_sequence_for<A...>{});
}
template <class T>
constexpr char scalar_code() {
    if constexpr (std::is_same<T, float>::value) return 'f';
    else if constexpr (std::is_same<T, double>::value) return 'd';
    else if constexpr (std::is_same<T, bool>::value) return 'c';
    else if constexpr (std::is_integral<T>::value)
        return sizeof(T) == 1 ? 'c' : sizeof(T) == 2 ? 's' : sizeof(T) == 4 ? (std::is_signed<T>::value ? 'i' : 'I')
             : sizeof(T) == 8 ? (std::is_signed<T>::value ? 'l' : 'L') : 'x';
    else if constexpr (std::is_void<T>::value) return 'v';
    else if constexpr (!std::is_same<typename elem<T>::type, T>::value) return scalar_code<typename elem<T>::type>();
    else return 'x';
}
template <class A>
constexpr char param_code() {
    if constexpr (std::is_pointer<A>::value) return 'p';
    else if constexpr (std::is_same<A, float>::value || std::is_same<A, double>::value) return scalar_code<A>();
    else if constexpr (std::is_integral<A>::value && !std::is_same<A, bool>::value && sizeof(A) >= 4)
        return scalar_code<A>();
    else return '?';
}
template <class A>
constexpr char pointee_code() {
    if constexpr (std::is_pointer<A>::value)
        return scalar_code<typename std::remove_cv<typename std::remove_pointer<A>::type>::type>();
    else return '-';
}
template <class A>
constexpr char align_code() {  // log2 of the pointee's alignment
    if constexpr (std::is_pointer<A>::value) {
        using T = typename std::remove_cv<typename std::remove_pointer<A>::type>::type;
        if constexpr (std::is_void<T>::value || std::is_function<T>::value) return '0';
        else return (char)('0' + __builtin_ctz((unsigned)alignof(T)));
    } else return '0';
}
template <class... A>
static Entry make_entry(void (*f)(A...), const char* name) {
    static const char sig[] = {param_code<A>()..., 0};
    static const char pt[] = {pointee_code<A>()..., 0};
    static const char al[] = {align_code<A>()..., 0};
    return Entry{reinterpret_cast<void*>(f), &call<A...>, sig, pt, al, name};
}
}  // namespace pcn_emu
"""

_SHIM = r"""
// ===== CUDA shim ===================================================================================
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __maxnreg__(n)
#define __grid_constant__
#define __cluster_dims__(...)
#define __shared__ static
#define __CUDA_ARCH__ 900
#define __CUDACC__ 1
#define PYCONVNET_HOST_EMU 1
static constexpr int warpSize = 32;

// barriers and warp intrinsics (the defaulted file/line name the call site in messages)
#define PCN_AT const char* pcn_file = __builtin_FILE(), int pcn_line = __builtin_LINE()
#define PCN_ATX pcn_file, pcn_line
inline void __syncthreads(PCN_AT) { pcn_emu::barrier(0, 0, PCN_ATX); }
inline int __syncthreads_count(int p, PCN_AT) { return pcn_emu::barrier(1, p, PCN_ATX); }
inline int __syncthreads_and(int p, PCN_AT) { return pcn_emu::barrier(2, p, PCN_ATX); }
inline int __syncthreads_or(int p, PCN_AT) { return pcn_emu::barrier(3, p, PCN_ATX); }
inline void __syncwarp(unsigned mask = 0xffffffffu, PCN_AT) {
    pcn_emu::warp_op(pcn_emu::W_SYNC, mask, nullptr, 0, 0, 32, nullptr, PCN_ATX);
}
template <class T> inline T pcn_shfl(int kind, unsigned mask, T v, int p, int width, const char* f, int l) {
    static_assert(sizeof(T) <= 16, "shuffle of more than 16 bytes");
    T r;
    pcn_emu::warp_op(kind, mask, &v, (int)sizeof(T), p, width, &r, f, l);
    return r;
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, PCN_AT) {
    return pcn_shfl(pcn_emu::W_SHFL, mask, v, src, width, PCN_ATX);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32, PCN_AT) {
    return pcn_shfl(pcn_emu::W_UP, mask, v, (int)d, width, PCN_ATX);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32, PCN_AT) {
    return pcn_shfl(pcn_emu::W_DOWN, mask, v, (int)d, width, PCN_ATX);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32, PCN_AT) {
    return pcn_shfl(pcn_emu::W_XOR, mask, v, m, width, PCN_ATX);
}
inline unsigned __ballot_sync(unsigned mask, int p, PCN_AT) {
    return (unsigned)pcn_emu::warp_op(pcn_emu::W_BALLOT, mask, nullptr, 0, p != 0, 32, nullptr, PCN_ATX);
}
inline int __any_sync(unsigned mask, int p, PCN_AT) {
    return (int)pcn_emu::warp_op(pcn_emu::W_ANY, mask, nullptr, 0, p != 0, 32, nullptr, PCN_ATX);
}
inline int __all_sync(unsigned mask, int p, PCN_AT) {
    return (int)pcn_emu::warp_op(pcn_emu::W_ALL, mask, nullptr, 0, p != 0, 32, nullptr, PCN_ATX);
}
inline unsigned __activemask() { return pcn_emu::activemask(); }
template <class T> inline unsigned __match_any_sync(unsigned mask, T v, PCN_AT) {
    return (unsigned)pcn_emu::warp_op(pcn_emu::W_MATCH_ANY, mask, &v, (int)sizeof(T), 0, 32, nullptr, PCN_ATX);
}
template <class T> inline unsigned __match_all_sync(unsigned mask, T v, int* pred, PCN_AT) {
    unsigned r = (unsigned)pcn_emu::warp_op(pcn_emu::W_MATCH_ALL, mask, &v, (int)sizeof(T), 0, 32, nullptr, PCN_ATX);
    *pred = r != 0;
    return r;
}
#define PCN_REDUCE(name, T, kind)                                                                         \
    inline T name(unsigned mask, T v, PCN_AT) {                                                           \
        return (T)pcn_emu::warp_op(pcn_emu::kind, mask, &v, 4, 0, 32, nullptr, PCN_ATX);                  \
    }
PCN_REDUCE(__reduce_add_sync, unsigned, W_RADD)
PCN_REDUCE(__reduce_add_sync, int, W_RADD)
PCN_REDUCE(__reduce_min_sync, unsigned, W_RUMIN)
PCN_REDUCE(__reduce_min_sync, int, W_RMIN)
PCN_REDUCE(__reduce_max_sync, unsigned, W_RUMAX)
PCN_REDUCE(__reduce_max_sync, int, W_RMAX)
PCN_REDUCE(__reduce_and_sync, unsigned, W_RAND)
PCN_REDUCE(__reduce_or_sync, unsigned, W_ROR)
PCN_REDUCE(__reduce_xor_sync, unsigned, W_RXOR)
inline void __nanosleep(unsigned) { pcn_emu::yield(); }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}
inline long long clock64() { static long long c = 0; return c += 64; }
inline void __trap(PCN_AT) { pcn_emu::trap("__trap()", PCN_ATX); }
inline void __brkpt(PCN_AT) { pcn_emu::trap("__brkpt()", PCN_ATX); }
#undef assert
#define assert(e) ((e) ? (void)0 : pcn_emu::assert_fail(#e, __FILE__, __LINE__))

// memory
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// atomics: nothing runs concurrently, so plain read-modify-write
namespace pcn_emu { template <class T> struct same { using type = T; }; }
#define PCN_ATOMIC(name, expr)                                                                            \
    template <class T> inline T name(T* a, typename pcn_emu::same<T>::type v) { T o = *a; *a = (expr); return o; }
PCN_ATOMIC(atomicAdd, o + v)
PCN_ATOMIC(atomicSub, o - v)
PCN_ATOMIC(atomicExch, v)
PCN_ATOMIC(atomicMin, v < o ? v : o)
PCN_ATOMIC(atomicMax, v > o ? v : o)
PCN_ATOMIC(atomicAnd, o & v)
PCN_ATOMIC(atomicOr, o | v)
PCN_ATOMIC(atomicXor, o ^ v)
template <class T> inline T atomicCAS(T* a, typename pcn_emu::same<T>::type c, typename pcn_emu::same<T>::type v) {
    T o = *a;
    if (o == c) *a = v;
    return o;
}
inline unsigned atomicInc(unsigned* a, unsigned v) { unsigned o = *a; *a = o >= v ? 0 : o + 1; return o; }
inline unsigned atomicDec(unsigned* a, unsigned v) { unsigned o = *a; *a = (o == 0 || o > v) ? v : o - 1; return o; }
inline float2 atomicAdd(float2* a, float2 v) { float2 o = *a; a->x += v.x; a->y += v.y; return o; }
inline float4 atomicAdd(float4* a, float4 v) {
    float4 o = *a; a->x += v.x; a->y += v.y; a->z += v.z; a->w += v.w; return o;
}
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicSub_block atomicSub
#define atomicSub_system atomicSub
#define atomicExch_block atomicExch
#define atomicExch_system atomicExch
#define atomicMin_block atomicMin
#define atomicMin_system atomicMin
#define atomicMax_block atomicMax
#define atomicMax_system atomicMax
#define atomicAnd_block atomicAnd
#define atomicAnd_system atomicAnd
#define atomicOr_block atomicOr
#define atomicOr_system atomicOr
#define atomicXor_block atomicXor
#define atomicXor_system atomicXor
#define atomicCAS_block atomicCAS
#define atomicCAS_system atomicCAS
#define atomicInc_block atomicInc
#define atomicInc_system atomicInc
#define atomicDec_block atomicDec
#define atomicDec_system atomicDec

// min/max as CUDA's overloads (fminf/fmaxf for floating point), umin..ullmax
template <class A, class B> inline typename std::common_type<A, B>::type min(A a, B b) {
    using C = typename std::common_type<A, B>::type;
    if constexpr (std::is_floating_point<C>::value) return fmin((C)a, (C)b);
    else return (C)a < (C)b ? (C)a : (C)b;
}
template <class A, class B> inline typename std::common_type<A, B>::type max(A a, B b) {
    using C = typename std::common_type<A, B>::type;
    if constexpr (std::is_floating_point<C>::value) return fmax((C)a, (C)b);
    else return (C)a > (C)b ? (C)a : (C)b;
}
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// device math beyond <math.h> (CUDA-only names; those a newer libc may declare are renamed)
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline double __drcp_rn(double x) { return 1.0 / x; }
inline double __dsqrt_rn(double x) { return sqrt(x); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }
inline float pcn_rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double pcn_rsqrt(double x) { return 1.0 / sqrt(x); }
inline float pcn_rsqrt(float x) { return 1.0f / sqrtf(x); }
inline float pcn_rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline double pcn_rcbrt(double x) { return 1.0 / cbrt(x); }
inline float pcn_sinpif(float x) { return (float)sin(M_PI * (double)x); }
inline float pcn_cospif(float x) { return (float)cos(M_PI * (double)x); }
inline double pcn_sinpi(double x) { return sin(M_PI * x); }
inline double pcn_cospi(double x) { return cos(M_PI * x); }
inline float pcn_fdividef(float a, float b) { return a / b; }
inline float pcn_normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678f); }
inline double pcn_normcdf(double x) { return 0.5 * erfc(-x * 0.7071067811865476); }
#define rsqrtf pcn_rsqrtf
#define rsqrt pcn_rsqrt
#define rcbrtf pcn_rcbrtf
#define rcbrt pcn_rcbrt
#define sinpif pcn_sinpif
#define cospif pcn_cospif
#define sinpi pcn_sinpi
#define cospi pcn_cospi
#define fdividef pcn_fdividef
#define normcdff pcn_normcdff
#define normcdf pcn_normcdf
/*@ROUNDING@*/
// bits
inline int __float_as_int(float x) { int r; memcpy(&r, &x, 4); return r; }
inline unsigned __float_as_uint(float x) { unsigned r; memcpy(&r, &x, 4); return r; }
inline float __int_as_float(int x) { float r; memcpy(&r, &x, 4); return r; }
inline float __uint_as_float(unsigned x) { float r; memcpy(&r, &x, 4); return r; }
inline long long __double_as_longlong(double x) { long long r; memcpy(&r, &x, 8); return r; }
inline double __longlong_as_double(long long x) { double r; memcpy(&r, &x, 8); return r; }
inline int __double2hiint(double x) { return (int)(__double_as_longlong(x) >> 32); }
inline int __double2loint(double x) { return (int)(unsigned)__double_as_longlong(x); }
inline double __hiloint2double(int hi, int lo) {
    return __longlong_as_double((long long)(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo));
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned long long __brevll(unsigned long long x) {
    return ((unsigned long long)__brev((unsigned)x) << 32) | __brev((unsigned)(x >> 32));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)(((((unsigned long long)hi << 32) | lo) << (s & 31)) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)(((((unsigned long long)hi << 32) | lo) << (s < 32 ? s : 32)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)((((unsigned long long)hi << 32) | lo) >> (s & 31));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)((((unsigned long long)hi << 32) | lo) >> (s < 32 ? s : 32));
}
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) {
    return (int)(unsigned)((long long)((int)((unsigned)a << 8) >> 8) * ((int)((unsigned)b << 8) >> 8));
}
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned __sad(int x, int y, unsigned z) { return (unsigned)llabs((long long)x - y) + z; }
inline unsigned __usad(unsigned x, unsigned y, unsigned z) { return (x > y ? x - y : y - x) + z; }
inline int __hadd(int x, int y) { return (int)(((long long)x + y) >> 1); }
inline int __rhadd(int x, int y) { return (int)(((long long)x + y + 1) >> 1); }
inline unsigned __uhadd(unsigned x, unsigned y) { return (unsigned)(((unsigned long long)x + y) >> 1); }
inline unsigned __urhadd(unsigned x, unsigned y) { return (unsigned)(((unsigned long long)x + y + 1) >> 1); }
"""

_TAIL = r"""
// ===== entry points ================================================================================
static const pcn_emu::Entry pcn_entries[] = {
/*@ENTRIES@*/
    pcn_emu::Entry{}};
PCN_API int pcn_count() { return (int)(sizeof(pcn_entries) / sizeof(pcn_entries[0])) - 1; }
PCN_API const char* pcn_name(int k) { return pcn_entries[k].name; }
PCN_API const char* pcn_sig(int k) { return pcn_entries[k].sig; }
PCN_API const char* pcn_pointee(int k) { return pcn_entries[k].pointee; }
PCN_API const char* pcn_align(int k) { return pcn_entries[k].align; }
PCN_API void* pcn_dyn_shared() { return pcn_emu::dyn_shared; }
PCN_API int pcn_run(int k, void** args, const unsigned* grid, const unsigned* block, unsigned long long shmem,
                    int schedule, unsigned long long seed, void* status, int isolate, double timeout) {
    pcn_emu::Status* st = static_cast<pcn_emu::Status*>(status);
    const pcn_emu::Entry* e = &pcn_entries[k];
    if (isolate) return pcn_emu::launch_isolated(e, args, grid, block, shmem, schedule, seed, st, timeout);
    return pcn_emu::launch(e, args, grid, block, shmem, schedule, seed, st);
}
"""

_VEC_BASES = [("char", "signed char", 1), ("uchar", "unsigned char", 1), ("short", "short", 2),
              ("ushort", "unsigned short", 2), ("int", "int", 4), ("uint", "unsigned int", 4), ("long", "long", 8),
              ("ulong", "unsigned long", 8), ("longlong", "long long", 8), ("ulonglong", "unsigned long long", 8),
              ("float", "float", 4), ("double", "double", 8)]


def _vectors() -> str:
    """CUDA's vector types with their sizes and alignments, make_<type>, and their element types."""
    out = []
    for name, ctype, size in _VEC_BASES:
        for n in (1, 2, 3, 4):
            t, fields = f"{name}{n}", "xyzw"[:n]
            align = size if n == 3 else min(16, size * n)
            params = ", ".join(f"{ctype} {f}" for f in fields)
            out.append(f"struct __attribute__((aligned({align}))) {t} {{ {ctype} {', '.join(fields)}; }};\n"
                       f"inline {t} make_{t}({params}) {{ return {t}{{{', '.join(fields)}}}; }}\n"
                       f"namespace pcn_emu {{ template <> struct elem<{t}> {{ using type = {ctype}; }}; }}")
    return "\n".join(out)


def _rounding() -> str:
    """The rounding-mode intrinsics (all round to nearest here) and the saturating conversions."""
    out = ["namespace pcn_emu { template <class I, class F> inline I sat(F v) {",
           "    if (v != v) return 0;",
           "    if (v <= (F)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();",
           "    if (v >= (F)std::numeric_limits<I>::max()) return std::numeric_limits<I>::max();",
           "    return (I)v; } }"]
    for m in ("rn", "rz", "ru", "rd"):
        for op, e in (("add", "a + b"), ("sub", "a - b"), ("mul", "a * b"), ("div", "a / b")):
            out.append(f"inline float __f{op}_{m}(float a, float b) {{ return {e}; }}")
            out.append(f"inline double __d{op}_{m}(double a, double b) {{ return {e}; }}")
        out.append(f"inline float __fmaf_{m}(float a, float b, float c) {{ return fmaf(a, b, c); }}")
        out.append(f"inline double __fma_{m}(double a, double b, double c) {{ return fma(a, b, c); }}")
        rf = {"rn": "rintf", "rz": "truncf", "ru": "ceilf", "rd": "floorf"}[m]
        rd = rf[:-1]
        for name, ct in (("int", "int"), ("uint", "unsigned"), ("ll", "long long"), ("ull", "unsigned long long")):
            out.append(f"inline {ct} __float2{name}_{m}(float x) {{ return pcn_emu::sat<{ct}>({rf}(x)); }}")
            out.append(f"inline {ct} __double2{name}_{m}(double x) {{ return pcn_emu::sat<{ct}>({rd}(x)); }}")
            out.append(f"inline float __{name}2float_{m}({ct} x) {{ return (float)x; }}")
            out.append(f"inline double __{name}2double_{m}({ct} x) {{ return (double)x; }}")
        out.append(f"inline float __double2float_{m}(double x) {{ return (float)x; }}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Reading the kernel source: comments, __shared__ declarations, kernel names and parameters.

def _blank_comments(text: str, strings: bool = False) -> str:
    """``text`` with comments (and, if ``strings``, string/char literal contents) replaced by spaces,
    newlines kept, so that positions and line numbers stay the same."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            if not strings:
                i = j
                continue
            i += 1
            j -= 1
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


_EXTERN_SHARED = re.compile(r"\bextern\s+__shared__\s+([^;\[\]{}()]*(?:__align__\s*\([^)]*\)[^;\[\]{}()]*)*?)"
                            r"\b(\w+)\s*\[\s*\]\s*;")
_SHARED = re.compile(r"\b__shared__\b")


def _rewrite_shared(text: str) -> str:
    """``extern __shared__ T s[];`` -> a pointer into the launch's dynamic shared memory; every other
    ``__shared__`` declaration gets a registration (``SharedTouch``) that poisons it once per block."""
    code = _blank_comments(text, strings=True)
    edits = []  # (start, end, replacement)
    for m in _EXTERN_SHARED.finditer(code):
        ctype = re.sub(r"__align__\s*\([^)]*\)|alignas\s*\([^)]*\)", " ", text[m.start(1):m.end(1)]).strip()
        ctype = " ".join(ctype.split())
        repl = f"{ctype}* const {m[2]} = reinterpret_cast<{ctype}*>(pcn_emu::dyn_shared);"
        edits.append((m.start(), m.end(), repl + "\n" * text[m.start():m.end()].count("\n")))
    taken = [(s, e) for s, e, _ in edits]
    directive = _directive_mask(code)
    counter = 0
    for m in _SHARED.finditer(code):
        if any(s <= m.start() < e for s, e in taken):
            continue
        if directive[m.start()]:   # inside a #define: becomes `static`, not registered for poisoning
            edits.append((m.start(), m.end(), "static"))
            continue
        depth, j = 0, m.end()
        while j < len(code) and not (code[j] == ";" and depth == 0) and not directive[j]:
            if code[j] in "([{":
                depth += 1
            elif code[j] in ")]}":
                depth -= 1
                if depth < 0:
                    break
            j += 1
        if j >= len(code) or code[j] != ";":
            continue  # not a declaration we understand (e.g. inside a macro): left as `static`
        names = []
        for part in _split_top(code[m.end():j]):
            part = re.sub(r"\[[^\]]*\]", " ", part.split("=")[0])
            ids = re.findall(r"[A-Za-z_]\w*", re.sub(r"__align__\s*\([^)]*\)", " ", part))
            if ids:
                names.append(ids[-1])
        keyword = "" if re.search(r"\bstatic\s*$", code[max(0, m.start() - 40):m.start()]) else "static"
        touches = "".join(f" pcn_emu::SharedTouch pcn_shared_{counter}_{k}(&{n}, sizeof({n}));"
                          for k, n in enumerate(names))
        counter += 1
        edits.append((m.start(), m.end(), keyword))
        edits.append((j + 1, j + 1, touches))
    for s, e, r in sorted(edits, key=lambda t: (t[0], t[1]), reverse=True):
        text = text[:s] + r + text[e:]
    return text


def _directive_mask(code: str) -> list[bool]:
    """For every character of ``code``: is it on a preprocessor line (continuation lines included)?"""
    mask, cont = [], False
    for line in code.splitlines(keepends=True):
        on = cont or line.lstrip().startswith("#")
        mask.extend([on] * len(line))
        cont = on and line.rstrip("\r\n").endswith("\\")
    return mask + [False]


def _split_top(s: str) -> list[str]:
    """``s`` split at the commas outside brackets and template angle brackets."""
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


_EXTERN_C = re.compile(r"\bextern\s+\"C\"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")
_DEFINITION = r"__global__\s+(?:void\s+)?(?:__launch_bounds__\s*\(([^)]*)\)\s*)?(?:void\s+)?{name}\s*\("


def _kernel_names(code: str) -> list[str]:
    """The entry points: explicit template instantiations, then ``extern "C"`` kernels."""
    names = entry_points(code)
    names += [m[1] for m in _EXTERN_C.finditer(code) if m[1] not in names]
    return names


def _closing_paren(code: str, i: int) -> int:
    depth = 0
    for j in range(i, len(code)):
        if code[j] == "(":
            depth += 1
        elif code[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _kernel_info(code: str, base: str) -> tuple[list[str], int | None]:
    """Best effort: the parameter names and the ``__launch_bounds__`` thread limit of kernel ``base``,
    read from its definition (the declaration followed by a body)."""
    for m in re.finditer(_DEFINITION.format(name=re.escape(base)), code):
        close = _closing_paren(code, m.end() - 1)
        if close < 0 or not code[close + 1:].lstrip().startswith("{"):
            continue
        names = []
        for p in _split_top(code[m.end():close]):
            ids = re.findall(r"[A-Za-z_]\w*", re.sub(r"\[[^\]]*\]", " ", p.split("=")[0]))
            names.append(ids[-1] if len(ids) > 1 else "")
        bound = None
        if m[1]:
            first = m[1].split(",")[0].strip()
            if first.isdigit():
                bound = int(first)
            else:
                d = re.search(rf"(?:#define\s+{re.escape(first)}\s+|\b{re.escape(first)}\s*=\s*)(\d+)\b", code)
                bound = int(d[1]) if d else None
        return names, bound
    return [], None


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _generate(path: Path, text: str, names: list[str]) -> str:
    """The C++ translation unit for ``text`` (the kernel file at ``path``)."""
    runtime = (_RUNTIME.replace("/*@VECTORS@*/", _vectors()).replace("/*@STACK_KIB@*/", str(STACK_KIB))
               .replace("/*@DYN_SHARED_MAX@*/", str(DYN_SHARED_MAX)).replace("/*@POISON@*/", hex(POISON)))
    shim = _SHIM.replace("/*@ROUNDING@*/", _rounding())
    entries = "".join(f"    pcn_emu::make_entry(&{n}, {_c_string(n)}),\n" for n in names)
    return (runtime + shim + f'#line 1 {_c_string(str(path.resolve()))}\n' + _rewrite_shared(text) +
            '\n#line 1 "<cuda_host entry points>"\n' + _TAIL.replace("/*@ENTRIES@*/", entries))


# --------------------------------------------------------------------------------------------------
# Compiling (cached in the process and on disk)

_compiler_cache: dict = {}
_libraries: dict = {}


def compiler() -> str | None:
    """The host C++ compiler: ``$CXX``, else g++, c++ or clang++ on PATH; None when there is none."""
    if "path" not in _compiler_cache:
        env = os.environ.get("CXX")
        _compiler_cache["path"] = (shutil.which(env) if env else None) or shutil.which("g++") or \
            shutil.which("c++") or shutil.which("clang++")
    return _compiler_cache["path"]


def _flags(cxx: str) -> list[str]:
    """Compiler flags, probing once whether ``-ftrivial-auto-var-init=pattern`` is understood."""
    if "flags" not in _compiler_cache:
        flags = ["-std=c++17", "-O1", "-g1", "-fPIC", "-shared", "-w", "-fno-strict-aliasing", "-fvisibility=hidden",
                 "-fno-math-errno"]
        probe = subprocess.run([cxx, "-ftrivial-auto-var-init=pattern", "-x", "c++", "-fsyntax-only", "-"],
                               input="int main() { int x; return x; }\n", capture_output=True, text=True)
        if probe.returncode == 0:
            flags.append("-ftrivial-auto-var-init=pattern")
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()
        _compiler_cache["flags"] = flags
        _compiler_cache["version"] = version[0] if version else ""
    return _compiler_cache["flags"]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for d in (Path(base) / "pyconvnet" / "cuda_host",
              Path(tempfile.gettempdir()) / f"pyconvnet-cuda-host-{os.getuid()}"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="pyconvnet-cuda-host-"))


def _build(path: Path, text: str, names: list[str], extra: tuple) -> Path:
    """Compile the kernel file into a shared library (reusing an identical earlier build)."""
    cxx = compiler()
    if cxx is None:
        raise CompileError("no host C++ compiler (set CXX, or install g++) to run CUDA kernels on the CPU")
    flags = _flags(cxx) + list(extra)
    src = _generate(path, text, names)
    key = hashlib.sha256("\0".join([cxx, _compiler_cache["version"], *flags, src]).encode()).hexdigest()[:24]
    out_dir = _cache_dir()
    so = out_dir / f"{path.stem}-{key}.so"
    if so.is_file():
        os.utime(so)
        return so
    _prune(out_dir)
    tmp = out_dir / f".{path.stem}-{key}-{os.getpid()}-{threading.get_ident()}"
    cpp = tmp.with_suffix(".cpp")
    cpp.write_text(src)
    proc = subprocess.run([cxx, *flags, "-o", str(tmp), str(cpp), "-ldl"], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        cpp = cpp.replace(out_dir / f"{path.stem}-{key}.cpp")   # kept for reading
        diag = "\n".join(proc.stderr.splitlines()[:80])
        hint = ""
        if re.search(r"\basm\b|\b__asm__\b", _blank_comments(text)):
            hint = ("\n(the file has inline asm: PTX cannot run on the CPU; give the emulator a plain C++ path "
                    "under #ifdef PYCONVNET_HOST_EMU)")
        raise CompileError(f"{path}: the host compiler failed (generated source {cpp}):\n{diag}{hint}")
    os.replace(tmp, so)
    cpp.unlink()
    return so


def _prune(out_dir: Path, days: float = 14) -> None:
    """Remove cached builds unused for ``days`` (kernel files in temporary folders leave many behind)."""
    old = time.time() - days * 86400
    for f in out_dir.glob("*"):
        try:
            if f.stat().st_mtime < old:
                f.unlink()
        except OSError:
            pass


class _Library:
    """One compiled kernel file: the loaded library and what each entry point takes."""

    def __init__(self, path: Path, text: str, extra: tuple):
        code = _blank_comments(text)
        self.names = _kernel_names(code)
        self.so = _build(path, text, self.names, extra)
        lib = ctypes.CDLL(str(self.so))
        lib.pcn_count.restype = ctypes.c_int
        for f in (lib.pcn_name, lib.pcn_sig, lib.pcn_pointee, lib.pcn_align):
            f.restype, f.argtypes = ctypes.c_char_p, [ctypes.c_int]
        lib.pcn_dyn_shared.restype = ctypes.c_void_p
        lib.pcn_run.restype = ctypes.c_int
        lib.pcn_run.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulonglong,
                                ctypes.c_int, ctypes.c_ulonglong, ctypes.c_void_p, ctypes.c_int, ctypes.c_double]
        assert lib.pcn_count() == len(self.names)
        self.lib = lib
        self.dyn_shared = lib.pcn_dyn_shared()
        self.index = {n: k for k, n in enumerate(self.names)}
        self.sig = [lib.pcn_sig(k).decode() for k in range(len(self.names))]
        self.pointee = [lib.pcn_pointee(k).decode() for k in range(len(self.names))]
        self.align = [[1 << int(c) for c in lib.pcn_align(k).decode()] for k in range(len(self.names))]
        info = {}
        for n in self.names:
            base = n.split("<")[0]
            if base not in info:
                info[base] = _kernel_info(code, base)
        self.params = [info[n.split("<")[0]][0] for n in self.names]
        self.bounds = [info[n.split("<")[0]][1] for n in self.names]


# --------------------------------------------------------------------------------------------------
# The memory the emulated kernel sees: one shared mapping (visible to the forked child).

class _Status(ctypes.Structure):
    _fields_ = [("rc", ctypes.c_int32), ("sig", ctypes.c_int32), ("sigcode", ctypes.c_int32),
                ("access", ctypes.c_int32), ("where", ctypes.c_int32), ("in_kernel", ctypes.c_int32),
                ("block", ctypes.c_uint32 * 3), ("thread", ctypes.c_uint32 * 3), ("addr", ctypes.c_uint64),
                ("pc", ctypes.c_uint64), ("blocks_done", ctypes.c_uint64), ("nblocks", ctypes.c_uint64),
                ("msg", ctypes.c_char * 4000)]


assert ctypes.sizeof(_Status) == 4080


class _Region:
    """Arguments that share memory (one range of host memory) and where their copy lives."""

    def __init__(self, lo, hi, members):
        self.lo, self.hi, self.members = lo, hi, members   # members: [(arg index, array)]
        self.start = self.data = self.end = 0                # arena offsets: pages, the copy, end of pages


class _Arena:
    def __init__(self):
        self.mm = None
        self.buf = None
        self.size = 0
        self.base = 0
        self.protected = False
        self._libc = None
        pat = np.full(3 * _PAGE // 4 + 2, POISON, np.uint32)
        self.pattern = pat.view(np.uint8)

    def reserve(self, size: int) -> None:
        if size <= self.size:
            return
        size = -(-max(size, 2 * self.size, 1 << 20) // _PAGE) * _PAGE
        self.unprotect()
        if self.mm is not None:
            self.buf = None
            self.mm.close()
        self.mm = mmap.mmap(-1, size)   # MAP_SHARED | MAP_ANONYMOUS: the forked child writes into it
        self.buf = np.frombuffer(self.mm, np.uint8)
        self.base, self.size = self.buf.ctypes.data, size

    def mprotect(self, off: int, n: int, writable: bool) -> None:
        if self._libc is None:
            self._libc = ctypes.CDLL(None, use_errno=True)
            self._libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        prot = (mmap.PROT_READ | mmap.PROT_WRITE) if writable else 0  # PROT_NONE
        if self._libc.mprotect(self.base + off, n, prot) != 0:
            raise OSError(ctypes.get_errno(), f"mprotect: {os.strerror(ctypes.get_errno())}")

    def unprotect(self) -> None:
        if self.protected:
            self.mprotect(0, self.size, True)
            self.protected = False

    def fill(self, a: int, b: int) -> None:
        """Poison [a, b) (page-aligned offsets)."""
        self.buf[a:b].view(np.uint32)[:] = POISON

    def intact(self, a: int, b: int) -> np.ndarray:
        """Offsets (relative to a) of the bytes in [a, b) that no longer hold the poison pattern."""
        ph = (self.base + a) % 4
        return np.flatnonzero(self.buf[a:b] != self.pattern[ph:ph + b - a])


_ARENA = _Arena()


def _host_bytes(addr: int, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(addr)) if n else np.empty(0, np.uint8)


# --------------------------------------------------------------------------------------------------

def _dims(what: str, v) -> tuple:
    t = (v,) if isinstance(v, (numbers.Integral, np.integer)) else tuple(v)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, (numbers.Integral, np.integer)) for x in t):
        raise ValueError(f"{what} must be an int or a tuple of 1 to 3 ints, got {v!r}")
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


class HostModule:
    """One kernels/*.cu file compiled for the CPU; ``launch`` runs one of its kernels on NumPy arrays.

    ``guard`` (default on): out-of-bounds detection around every array (see the module docstring).
    ``isolate`` (default on): each launch runs in a forked child, so a crash or an endless loop becomes
    a KernelError (after ``timeout`` seconds); off, the launch runs in this process.
    ``schedule``: ``"forward"`` (threads and blocks in index order), ``"reverse"`` or ``"random"``
    (seeded with ``seed``); ``launch`` can override both. ``cxx_flags``: extra compiler flags (e.g.
    ``("-DTILE=8",)``).
    """

    def __init__(self, path, *, guard: bool = True, isolate: bool = True, timeout: float = 60.0,
                 schedule: str = "forward", seed: int = 0, cxx_flags=()):
        self.path = Path(path)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.guard, self.isolate, self.timeout = bool(guard), bool(isolate), float(timeout)
        self.schedule, self.seed = schedule, int(seed)
        text = self.path.read_text()
        key = (str(self.path.resolve()), hashlib.sha256(text.encode()).hexdigest(), tuple(cxx_flags))
        with _LOCK:
            lib = _libraries.get(key)
            if lib is None:
                lib = _libraries[key] = _Library(self.path, text, tuple(cxx_flags))
        self._lib = lib

    @property
    def names(self) -> list[str]:
        """The kernel entry points, e.g. ``['pool_fwd<float>', 'pool_fwd<double>']``."""
        return list(self._lib.names)

    def signature(self, name: str) -> str:
        """The ``sig`` letters the compiled kernel's parameters take (``?``: not passable)."""
        return "".join(_PARAM_LETTER.get(c, "?") for c in self._lib.sig[self._entry(name)])

    def _entry(self, name: str) -> int:
        k = self._lib.index.get(re.sub(r"\s+", "", name))
        if k is None:
            raise ValueError(f"{self.path.name} has no kernel {name!r}; its entry points are: "
                             f"{', '.join(self._lib.names) or 'none'}")
        return k

    def launch(self, name: str, grid, block, args, sig: str, shmem: int = 0, *, schedule: str | None = None,
               seed: int | None = None) -> None:
        """Run kernel ``name`` over ``grid`` x ``block`` threads on ``args`` (see the module docstring).

        Arrays are written in place when the launch succeeds; on any failure KernelError is raised and
        the arrays are left as they were.
        """
        lib = self._lib
        k = self._entry(name)
        name = lib.names[k]
        grid3, block3 = _dims("grid", grid), _dims("block", block)
        schedule = self.schedule if schedule is None else schedule
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        seed = self.seed if seed is None else int(seed)
        what = f"{name} grid {grid3} block {block3}"
        self._check_config(k, what, grid3, block3, shmem)
        storage, slots, arrays = self._arguments(k, args, sig)
        with _LOCK:
            self._run(k, what, grid3, block3, int(shmem), schedule, seed, storage, slots, arrays)

    # ---- checks ---------------------------------------------------------------------------------
    def _check_config(self, k, what, grid3, block3, shmem):
        if min(grid3) < 1 or min(block3) < 1:
            raise ValueError(f"{what}: every grid and block dimension must be >= 1")
        threads = block3[0] * block3[1] * block3[2]
        if threads > 1024 or block3[0] > 1024 or block3[1] > 1024 or block3[2] > 64:
            raise KernelError(f"{what}: a block has at most 1024 threads (x, y <= 1024, z <= 64); the GPU "
                              f"refuses this launch")
        if grid3[0] > 2**31 - 1 or grid3[1] > 65535 or grid3[2] > 65535:
            raise KernelError(f"{what}: grid too large (x <= 2^31-1, y, z <= 65535); the GPU refuses this launch")
        bound = self._lib.bounds[k]
        if bound is not None and threads > bound:
            raise KernelError(f"{what}: {threads} threads per block, more than the kernel's "
                              f"__launch_bounds__({bound}); the GPU refuses this launch")
        if not isinstance(shmem, (numbers.Integral, np.integer)) or not 0 <= shmem <= DYN_SHARED_MAX:
            raise ValueError(f"{what}: shmem must be an int in [0, {DYN_SHARED_MAX}], got {shmem!r}")

    def _arg_name(self, k, i):
        names = self._lib.params[k]
        return f"argument {i} ({names[i]})" if i < len(names) and names[i] else f"argument {i}"

    def _arguments(self, k, args, sig):
        """ctypes storage for every argument, and the arrays among them."""
        lib, name = self._lib, self._lib.names[k]
        if not isinstance(sig, str) or any(c not in _SIG_LETTERS for c in sig):
            raise ValueError(f"{name}: sig must be a string of the letters p, i, l, f, d (or F, as f); "
                             f"got {sig!r}")
        args = tuple(args)
        if len(sig) != len(args):
            raise ValueError(f"{name}: sig {sig!r} has {len(sig)} letters but {len(args)} arguments were given")
        want = lib.sig[k]
        if len(want) != len(sig):
            raise ValueError(f"{name}: the kernel takes {len(want)} parameters ({self.signature(name)!r}), "
                             f"sig {sig!r} has {len(sig)}")
        storage, arrays = [], []
        for i, (c, a, w) in enumerate(zip(sig, args, want)):
            arg, c = self._arg_name(k, i), _ALIAS.get(c, c)
            if _PARAM_LETTER.get(w) != c:
                raise ValueError(f"{name}: {arg} is {_PARAM_CTYPE.get(w, w)} in the kernel, but sig says {c!r} "
                                 f"({_SIG_LETTERS[c]})" + (f": use {_PARAM_LETTER[w]!r}" if w in _PARAM_LETTER else ""))
            if c == "p":
                storage.append(ctypes.c_void_p(0))
                if a is None:
                    continue
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{name}: {arg} must be a NumPy array (or None), got {type(a).__name__}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{name}: {arg} must be C-contiguous (shape {a.shape}, strides {a.strides})")
                ok = _POINTEE_DTYPES.get(lib.pointee[k][i])
                if ok is not None and a.dtype.name not in ok:
                    raise ValueError(f"{name}: {arg} points to {_POINTEE_CTYPE[lib.pointee[k][i]]} in the kernel, "
                                     f"got a {a.dtype} array")
                al = lib.align[k][i]
                if a.size and a.ctypes.data % al:
                    raise KernelError(f"{name}: {arg} must be {al}-byte aligned for the kernel's pointer type, "
                                      f"its address is {a.ctypes.data % al} bytes past a multiple of {al} (a GPU "
                                      f"faults on it)")
                arrays.append((i, a))
            elif c in "il":
                if not isinstance(a, (numbers.Integral, np.integer)):
                    raise TypeError(f"{name}: {arg} ({_SIG_LETTERS[c]}) must be an integer, got {a!r}")
                bits = 32 if c == "i" else 64
                lo, hi = (0, 2**bits - 1) if w in "IL" else (-2**(bits - 1), 2**(bits - 1) - 1)
                if not lo <= int(a) <= hi:
                    raise ValueError(f"{name}: {arg} = {int(a)} does not fit {_PARAM_CTYPE[w]}")
                ct = {"i": ctypes.c_int32, "I": ctypes.c_uint32, "l": ctypes.c_int64, "L": ctypes.c_uint64}[w]
                storage.append(ct(int(a)))
            else:
                if not isinstance(a, (numbers.Real, np.integer, np.floating)):
                    raise TypeError(f"{name}: {arg} ({_SIG_LETTERS[c]}) must be a real number, got {a!r}")
                storage.append((ctypes.c_float if c == "f" else ctypes.c_double)(float(a)))
        slots = (ctypes.c_void_p * max(1, len(storage)))(*[ctypes.addressof(s) for s in storage])
        return storage, slots, arrays

    # ---- the launch -----------------------------------------------------------------------------
    def _layout(self, arrays):
        """Group arrays that share memory, and place each group in the arena: the copy keeps the
        original address modulo 256; with guard, it ends at most 255 bytes before an inaccessible gap of
        _GAP bytes and starts after poison-filled bytes that follow another such gap."""
        spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes, i, a) for i, a in arrays)
        regions = []
        for lo, hi, i, a in spans:
            if regions and lo < regions[-1].hi and hi > lo:
                r = regions[-1]
                r.hi = max(r.hi, hi)
                r.members.append((i, a))
            else:
                regions.append(_Region(lo, hi, [(i, a)]))
        off = _PAGE + (_GAP if self.guard else 0)   # the status page, then an inaccessible gap
        for r in regions:
            nb, mod = r.hi - r.lo, r.lo % 256
            if self.guard:
                t256 = -(-(mod + nb) // 256) * 256
                pages = max(1, -(-t256 // _PAGE))
                r.start, r.data = off, off + pages * _PAGE - t256 + mod
                r.end = off + pages * _PAGE
                off = r.end + _GAP
            else:
                r.start = r.data = -(-off // 256) * 256 + mod
                r.end = r.data + nb
                off = -(-r.end // _PAGE) * _PAGE
        return regions, -(-off // _PAGE) * _PAGE

    def _run(self, k, what, grid3, block3, shmem, schedule, seed, storage, slots, arrays):
        lib, arena = self._lib, _ARENA
        regions, total = self._layout(arrays)
        arena.reserve(total)
        arena.unprotect()
        arena.buf[:_PAGE] = 0
        status = _Status.from_address(arena.base)
        for r in regions:
            if self.guard:
                arena.fill(r.start, r.end)
            arena.buf[r.data:r.data + r.hi - r.lo] = _host_bytes(r.lo, r.hi - r.lo)
            for i, a in r.members:
                storage[i].value = arena.base + r.data + (a.ctypes.data - r.lo)
        try:
            if self.guard:   # everything but the status page and the regions' pages is inaccessible
                arena.protected = True
                ends = [_PAGE] + [r.end for r in regions]
                starts = [r.start for r in regions] + [arena.size]
                for a, b in zip(ends, starts):
                    arena.mprotect(a, b - a, False)
            rc = lib.lib.pcn_run(k, ctypes.cast(slots, ctypes.c_void_p), (ctypes.c_uint * 3)(*grid3),
                                 (ctypes.c_uint * 3)(*block3), shmem, SCHEDULES.index(schedule), seed,
                                 arena.base, int(self.isolate), self.timeout)
        finally:
            arena.unprotect()
        if rc != 0:
            raise KernelError(f"{what}: {self._failure(k, rc, status, regions, shmem)}")
        if self.guard:
            for r in regions:
                self._check_guard(k, what, r)
        for r in regions:
            new = arena.buf[r.data:r.data + r.hi - r.lo]
            if all(a.flags.writeable for _, a in r.members):
                _host_bytes(r.lo, r.hi - r.lo)[:] = new
            elif not np.array_equal(new, _host_bytes(r.lo, r.hi - r.lo)):
                raise KernelError(f"{what}: the kernel wrote to {self._arg_name(k, r.members[0][0])}, a read-only "
                                  f"array")

    def _check_guard(self, k, what, r):
        """A write into the poison around a region's copy: name the argument and the element indices."""
        arena, (i, a) = _ARENA, r.members[0]
        data0 = r.data + (a.ctypes.data - r.lo)
        bad = [r.start + b for b in arena.intact(r.start, r.data)]
        end = r.data + r.hi - r.lo
        bad += [end + b for b in arena.intact(end, r.end)]
        if not bad:
            return
        idx = sorted({(b - data0) // a.itemsize for b in bad})
        raise KernelError(f"{what}: out-of-bounds write to {self._arg_name(k, i)} ({a.dtype} array of {a.size} "
                          f"elements): element(s) {_ranges(idx)}")

    def _failure(self, k, rc, st, regions, shmem) -> str:
        msg = st.msg.decode(errors="replace")
        blk, thr = tuple(st.block), tuple(st.thread)
        if rc == 4:
            return (f"timed out after {self.timeout:g} s (an endless loop, or a thread spinning on another "
                    f"thread?) in block {blk}, thread {thr}, after {st.blocks_done} of {st.nblocks} blocks")
        if rc != 3:
            return msg
        sig = _SIGNALS.get(st.sig, f"signal {st.sig}")
        where = f"block {blk} thread {thr}" if st.in_kernel else "the emulator (outside kernel code)"
        line = self._source_line(st.pc)
        at = f" at {line}" if line else ""
        if st.sig == 8:
            kind = {1: "integer division by zero", 2: "integer overflow (INT_MIN / -1)"}.get(st.sigcode, "")
            return f"{sig} ({kind or 'arithmetic fault'}) in {where}{at}"
        if st.sig not in (7, 11):
            return f"{sig} in {where}{at}" + (f": {msg}" if msg else "")
        access = {1: "read of", 2: "write to"}.get(st.access, "access to")
        if st.where == 1:
            off = st.addr - self._lib.dyn_shared
            return (f"{sig}: {access} byte {off} of dynamic shared memory, but the launch gave shmem={shmem} "
                    f"bytes, in {where}{at}")
        if st.where == 2:
            return (f"{sig}: stack overflow (more than {STACK_KIB} KiB of stack for one thread: a huge local "
                    f"array?) in {where}{at}")
        if st.sigcode == 128 and st.addr == 0:  # SI_KERNEL: general protection
            return (f"{sig} (general protection fault: a misaligned vector access, e.g. float4 through a pointer "
                    f"that is not 16-byte aligned, or a wild pointer) in {where}{at}")
        return f"{sig}: {access} {self._address(k, st.addr, regions)} in {where}{at}"

    def _address(self, k, addr, regions) -> str:
        base = _ARENA.base
        if addr < 65536:
            return f"address {addr:#x} (a null pointer: an argument passed as None, or a missing one?)"
        best = None
        for r in regions:
            for i, a in r.members:
                start = base + r.data + (a.ctypes.data - r.lo)
                end = start + a.nbytes
                dist = start - addr if addr < start else addr - end + 1 if addr >= end else 0
                if best is None or dist < best[0]:
                    best = (dist, i, a, start)
        if best is None or best[0] > (1 << 20):
            return f"address {addr:#x}, outside every argument"
        _, i, a, start = best
        elem = (addr - start) // a.itemsize
        side = "before the start of" if elem < 0 else "past the end of" if elem >= a.size else "inside"
        return f"element {elem}, {side} {self._arg_name(k, i)} ({a.dtype} array of {a.size} elements)"

    def _source_line(self, pc) -> str:
        """file:line of a code offset in the library (addr2line on its line table), or ''."""
        tool = shutil.which("addr2line")
        if not pc or tool is None:
            return ""
        proc = subprocess.run([tool, "-e", str(self._lib.so), "-i", hex(pc)], capture_output=True, text=True)
        lines = [ln.split(" (discriminator")[0] for ln in proc.stdout.splitlines() if ":" in ln]
        mine = [ln for ln in lines if ln.startswith(str(self.path.resolve()))]
        pick = (mine or lines or [""])[0]
        return "" if pick.startswith("??") else pick


def _ranges(idx: list[int]) -> str:
    """[-1, 5, 6, 7] -> '-1, 5..7'."""
    out, i = [], 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        out.append(str(idx[i]) if i == j else f"{idx[i]}..{idx[j]}")
        i = j + 1
    return ", ".join(out[:8]) + (", ..." if len(out) > 8 else "")
