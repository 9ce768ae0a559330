#!/bin/bash
# usage: experiments/run.sh NAME FROM_WORKSPACE STAGES PIPELINE [--set ...]
#   Runs pipeline stages in /work/runs/acc/NAME on one thread, reusing (symlinking) the stage folders of
#   FROM_WORKSPACE that come before the first stage run: e.g. STAGES=train-teacher links download and featurize,
#   STAGES=distill also links train-teacher. Logs to /work/runs/acc/NAME.log.
set -e
name=$1; from=$2; stages=$3; pipeline=$4; shift 4
ws=/work/runs/acc/$name
mkdir -p "$ws"
case $stages in
  train-teacher) link="download featurize";;
  distill) link="download featurize train-teacher";;
  *) link="";;
esac
for s in $link; do [ -e "$ws/$s" ] || ln -s "$from/$s" "$ws/$s"; done
cd "$(dirname "$0")/.."
git rev-parse --short HEAD > "$ws/commit.txt"
echo "$stages $pipeline $*" > "$ws/command.txt"
# a linked stage that is not up to date would be rerun in place, inside FROM_WS: refuse instead
for s in $link; do
  state=$(.venv/bin/python -m bifsmn_cli status -c "$pipeline" --set download.path=/work/shared/data/speech-commands-real \
    --set workspace="$ws" "$@" 2>&1 | grep -E "^│ $s " | awk -F'│' '{print $3}' | xargs)
  if [ "$state" != "up to date" ]; then
    echo "linked stage $s is '$state' with these settings; refusing to rerun it inside $from" >> /work/runs/acc/$name.log
    exit 1
  fi
done
export OMP_NUM_THREADS=${THREADS:-1}
start=$(date +%s)
for st in $stages; do :; done
.venv/bin/python -m bifsmn_cli run -c "$pipeline" --set download.path=/work/shared/data/speech-commands-real \
  --set workspace="$ws" --to "${stages##* }" "$@" > /work/runs/acc/$name.log 2>&1
echo "minutes $(( ($(date +%s) - start) / 60 ))" >> /work/runs/acc/$name.log
