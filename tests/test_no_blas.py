"""A training step and a decoding step of every pyrnn model call no BLAS of NumPy's.

NumPy's BLAS keeps its own pool of threads, which competes with pyrnn's for the cores; the
building blocks therefore run on pyrnn's kernels (pyrnn._dense). To prove it, a child process
runs the steps with every BLAS function NumPy imports replaced, through LD_PRELOAD, by a trap
that names the function and aborts, once the child has imported everything and built its
data: any BLAS call on the path fails the test. A control run shows that the trap forwards
correctly before it is armed and catches NumPy's own matmul after.
"""
from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

TRAPPED = -signal.SIGABRT   # the trap aborts; faulthandler prints the Python stack


def _numpy_blas_imports() -> list[str]:
    """The BLAS/LAPACK functions NumPy's core extension imports from its BLAS library."""
    core = Path(np.__file__).parent / "_core"
    ext = next(core.glob("_multiarray_umath*.so"), None)
    if ext is None or shutil.which("nm") is None:
        return []
    out = subprocess.run(["nm", "-D", "--undefined-only", str(ext)], capture_output=True, text=True).stdout
    names = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    return sorted(n for n in names if "blas" in n.lower() or n.startswith(("cblas_", "sgemm", "dgemm")))


def _trap_line(name: str) -> str:
    integer = "long long" if "64" in name else "int"   # ILP64 builds mark their names with 64
    for op, T in (("sdot", "float"), ("ddot", "double")):
        if name.split("cblas_")[-1].startswith(op):
            return f"TRAP_DOT({name}, {T}, {integer})"
    if "dot" in name and "_sub" not in name or "nrm2" in name or "asum" in name or "amax" in name:
        raise ValueError(f"{name}: a BLAS function that returns a value this trap cannot forward")
    return f"TRAP({name})"


@pytest.fixture(scope="module")
def trap_library(tmp_path_factory) -> Path:
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the trap is written for LD_PRELOAD on x86-64 Linux")
    names = _numpy_blas_imports()
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not names or compiler is None:
        pytest.skip("needs nm, a C compiler and a NumPy that imports its BLAS dynamically")
    src = [TRAP_C] + [_trap_line(n) for n in names]
    d = tmp_path_factory.mktemp("blas_trap")
    (d / "trap.c").write_text("\n".join(src) + "\n")
    lib = d / "libblas_trap.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O0", "-o", str(lib), str(d / "trap.c"), "-ldl", "-lm"], check=True)
    return lib


# Each BLAS function NumPy imports becomes a function of the same name that, once armed,
# reports and aborts, and until then forwards its arguments unchanged (GCC's __builtin_apply,
# or the signature of the dot products, which return a value) to the real one, found in whichever other loaded library defines the name (NumPy's import
# itself runs a dot product).
TRAP_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fenv.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int armed;
void blas_trap_arm(void) { armed = 1; }

struct lookup { const char* name; void* self; void* found; };

static int find(struct dl_phdr_info* info, size_t size, void* data) {
  struct lookup* l = data;
  void* h = dlopen(info->dlpi_name[0] ? info->dlpi_name : NULL, RTLD_LAZY | RTLD_NOLOAD);
  if (h == NULL) return 0;
  void* f = dlsym(h, l->name);
  dlclose(h);
  if (f != NULL && f != l->self) { l->found = f; return 1; }
  return 0;
}

static void* real(const char* name, void* self) {
  struct lookup l = {name, self, NULL};
  fenv_t env;  /* the lookup must not leave floating-point flags that NumPy would report */
  fegetenv(&env);
  dl_iterate_phdr(find, &l);
  fesetenv(&env);
  if (l.found == NULL) abort();
  return l.found;
}

static void report(const char* name) {
  static const char msg[] = "numpy BLAS called: ";
  write(2, msg, sizeof msg - 1); write(2, name, strlen(name)); write(2, "\n", 1);
  abort();
}

/* Functions returning nothing: the real one's arguments forwarded as they came (x86-64). */
#define TRAP(name) \
  void name(void) { \
    void* args = __builtin_apply_args(); \
    static void* target; \
    if (armed) report(#name); \
    if (target == NULL) target = real(#name, (void*)&name); \
    __builtin_apply((void (*)())target, args, 512); \
    __asm__ volatile("fnclex"); /* __builtin_apply pops an empty x87 stack: clear that flag \
                                   (the BLAS's own, on SSE, stay in MXCSR) */ \
  }

/* Dot products return a value: forwarded by their signature. */
#define TRAP_DOT(name, T, I) \
  T name(I n, const T* x, I incx, const T* y, I incy) { \
    static T (*target)(I, const T*, I, const T*, I); \
    if (armed) report(#name); \
    if (target == NULL) target = (T (*)(I, const T*, I, const T*, I))real(#name, (void*)&name); \
    return target(n, x, incx, y, incy); \
  }
"""


def _run(lib: Path, *code: str) -> subprocess.CompletedProcess:
    """Runs the pieces of ``code`` (each indented alike) in a child with the trap preloaded."""
    # The child imports the pyrnn this test run imports (installed, or the tree on PYTHONPATH),
    # from a folder outside the source tree, whose uncompiled package would shadow it.
    # The trap goes after anything preloaded already (a sanitizer runtime must stay first).
    preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD", ""), str(lib)]))
    env = dict(os.environ, LD_PRELOAD=preload, PYTHONFAULTHANDLER="1")
    return subprocess.run([sys.executable, "-c", "\n".join(map(textwrap.dedent, code))], capture_output=True, text=True,
                          env=env, timeout=600, cwd=lib.parent)


ARM = """
    import ctypes
    ctypes.CDLL({lib!r}).blas_trap_arm()
"""


def test_the_trap_forwards_until_armed_then_catches_numpy_matmul(trap_library):
    r = _run(trap_library, """
        import numpy as np
        a = np.arange(12.0, dtype=np.float32).reshape(3, 4)
        assert np.array_equal(a @ a.T, np.einsum("ik,jk->ij", a, a)), "forwarded product is wrong"
        assert float(np.vdot(a, a)) == 506.0
    """, ARM.format(lib=str(trap_library)), """
        print((a @ a.T).sum())
    """)
    assert r.returncode == TRAPPED, r.stdout + r.stderr
    assert "numpy BLAS called" in r.stderr and "Warning" not in r.stderr, r.stderr


STEPS = """
    import numpy as np
    import pyrnn
    from pyrnn import optim

    pyrnn.set_num_threads({threads})
    rng = np.random.default_rng(0)
    import ctypes
    ctypes.CDLL({lib!r}).blas_trap_arm()

    def train(model, data, loss, **kw):
        pyrnn.fit(model, data, loss, optim.Adam(model, lr=1e-3), epochs=1, batch_size=4, progress=False,
                  clip_grad_norm=1.0, **kw)

    X = [rng.standard_normal((int(n), 3), dtype=np.float32) for n in rng.integers(2, 7, 8)]
    train(pyrnn.Seq2Vec(input_size=3, output_size=4, hidden_size=8, bidirectional=True, seed=0),
          (X, rng.integers(0, 4, 8)), "cross_entropy")
    train(pyrnn.Seq2Vec(input_size=3, output_size=2, hidden_size=8, cell="gru", pooling="mean", seed=0),
          (X, rng.standard_normal((8, 2), dtype=np.float32)), "mse")
    m = pyrnn.Seq2Seq(input_size=3, output_size=2, hidden_size=8, num_layers=2, dropout=0.1, seed=0)
    train(m, (X, [rng.standard_normal((len(x), 2), dtype=np.float32) for x in X]), "mse")
    src = [list(rng.integers(3, 9, int(n))) for n in rng.integers(2, 6, 8)]
    tgt = [list(rng.integers(3, 9, int(n))) for n in rng.integers(1, 5, 8)]
    for attention in (None, "dot", "general", "bahdanau"):
        m = pyrnn.EncoderDecoder(9, 9, hidden_size=8, embedding_dim=5, attention=attention,
                                 bidirectional=attention != "dot", seed=0)
        train(m, (src, tgt), "cross_entropy")
        m.generate(src[:3], max_len=5)
        m.generate(src[:3], max_len=5, beam_width=3)
    v = rng.standard_normal((8, 6), dtype=np.float32)
    m = pyrnn.Vec2Seq(6, 9, hidden_size=8, seed=0)
    train(m, (v, tgt), "cross_entropy")
    m.generate(v[:2], max_len=5, beam_width=2)
    x = rng.standard_normal((5, 3, 8), dtype=np.float32)
    for options in (dict(), dict(conv_kernel_size=4, qkv_blocksize=4, group_norm=True, learnable_skip=True,
                             ffn_activation="gelu")):
        stack = pyrnn.xLSTMBlockStack(8, blocks="ms", num_heads=2, seed=0, **options)
        opt = optim.SGD(stack, lr=0.01, momentum=0.9)
        for _ in range(2):
            stack.zero_grad()
            stack.backward(stack(x) - x)
            optim.clip_grad_norm(stack, 1.0)
            opt.step()
    print("ok")
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_training_and_decoding_steps_call_no_numpy_blas(trap_library, threads):
    r = _run(trap_library, STEPS.format(threads=threads, lib=str(trap_library)))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
