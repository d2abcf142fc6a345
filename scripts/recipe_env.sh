# Sourced by scripts/train_pretrained.sh: the recipe's data folders and the
# training commands' precision. AMP overrides it (bf16 autocast by default when the CPU has AMX, where it
# halves a step; set AMP=bf16 on a GPU); EXTRA adds more overrides to both training commands.
amp=${AMP:-}
if [ -z "$amp" ]; then
    amp=auto
    grep -q amx_bf16 /proc/cpuinfo 2>/dev/null && amp=bf16
fi
extra="--train.amp $amp ${EXTRA:-}"
data=(data/mw-mix-r4 data/mw-mix-r4-s1)
