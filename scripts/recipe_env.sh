# Sourced by scripts/train_pretrained.sh: the recipe's data folders, the training commands' precision and
# whether the transformer's step is compiled. AMP overrides the precision (bf16 autocast by default when the
# CPU has AMX, where it halves a step; set AMP=bf16 on a GPU); EXTRA adds more overrides to both training
# commands; COMPILE=0 trains the transformer uncompiled.
amp=${AMP:-}
if [ -z "$amp" ]; then
    amp=auto
    grep -q amx_bf16 /proc/cpuinfo 2>/dev/null && amp=bf16
fi
extra="--train.amp $amp ${EXTRA:-}"
# compiling takes a minute, then each step is faster (bench/train_step.py); inductor needs a C++ compiler
compile=""
if [ "${COMPILE:-1}" != 0 ]; then
    if command -v c++ > /dev/null; then
        compile="--train.compile"
    else
        echo "recipe: no C++ compiler (c++) for torch.compile on this CPU: training uncompiled" >&2
    fi
fi
data=(data/mw-mix-r4 data/mw-mix-r4-s1)
