#!/usr/bin/env bash
# Reproduce the BiFSMN paper's Tables 1-3 (with BiFSMNv2's methods beside them) on any pipeline's data set.
#   Table 1: vanilla binarization, + logit distillation, + plain feature distillation, + HED, + TBA (= BiFSMN),
#            then BiFSMNv2's FID instead of HED, + its LPB binarizer; one change per row
#   Table 2: BNN, DoReFa, XNOR, Bi-Real, IR-Net, RAD, the BiFSMN binarizer and LPB with one recipe (plain 1x)
#   Table 3: the 1x / 0.5x / 0.25x variants and BiFSMN_S: accuracy, parameters, FLOPs, engine latency
# Usage (a relative workspace or data path in the pipeline is taken from the current directory):
#   pipelines/reproduce.sh PIPELINE.yaml [--budget quick|full] [--no-latency] [--set section.key=value ...]
# quick: the pipeline's recipe with 6 distill epochs per row (about 2 hours for sc_real_10 on 2 cores);
# full: the paper's recipe (300 epochs). Data and teacher are made once in <workspace>/reproduce/<budget>/shared,
# each row runs in its own workspace under rows/; a finished row is skipped and an interrupted one resumes, so
# rerunning the same command continues. The tables go to <workspace>/reproduce/<budget>/table{1,2,3}.{md,json}.
# This is `bifsmn reproduce` run with this checkout's toolkit (bifsmn_cli/reproduce/ holds the rows and tables).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PIPELINE.yaml [--budget quick|full] [--no-latency] [--set k=v ...]" >&2; exit 1; }
config=$1; shift
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's toolkit, wherever the script runs from
exec "${PYTHON:-$repo/.venv/bin/python}" -m bifsmn_cli reproduce -c "$config" "$@"
