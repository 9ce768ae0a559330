#!/bin/bash
# Run the lines of /work/runs/acc/queue.txt one after another (each line: arguments of run.sh, or a shell
# command prefixed by "!"); a line is removed when it starts. Stops when the queue is empty.
q=/work/runs/acc/queue.txt
cd "$(dirname "$0")/.."
while true; do
  line=$(head -n1 "$q" 2>/dev/null)
  [ -z "$line" ] && break
  sed -i '1d' "$q"
  echo "$(date +%T) start $line" >> /work/runs/acc/queue.log
  if [[ $line == !* ]]; then bash -c "${line:1}"; else eval experiments/run.sh $line; fi
  echo "$(date +%T) done rc=$? $line" >> /work/runs/acc/queue.log
done
