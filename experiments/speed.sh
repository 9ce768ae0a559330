#!/bin/bash
# Alternated timings of one teacher epoch and one student epoch: 1 thread, 2 threads, torchrun 2 x 1 thread.
# usage: experiments/speed.sh ROUNDS   (writes /work/runs/acc/speed.log; teacher from /work/runs/acc/t_base15)
cd "$(dirname "$0")/.."
rounds=${1:-2}
set_common="--set download.path=/work/shared/data/speech-commands-real"
for r in $(seq "$rounds"); do
  for mode in t1 t2 ddp; do
    for stage in train-teacher distill; do
      ws=/work/runs/acc/speed_${mode}_${stage}
      rm -rf "$ws"; mkdir -p "$ws"
      for s in download featurize; do ln -s /work/runs/acc/base/$s "$ws/$s"; done
      [ "$stage" = distill ] && ln -s /work/runs/acc/t_base15/train-teacher "$ws/train-teacher"
      args="run -c experiments/sc_real_10_x.yaml $set_common --set workspace=$ws --to $stage --set train_teacher.epochs=1 --set distill.epochs=1"
      case $mode in
        t1) OMP_NUM_THREADS=1 .venv/bin/python -m bifsmn_cli --quiet $args ;;
        t2) OMP_NUM_THREADS=2 .venv/bin/python -m bifsmn_cli --quiet $args ;;
        ddp) OMP_NUM_THREADS=1 .venv/bin/python -m torch.distributed.run --nproc_per_node=2 -m bifsmn_cli --quiet $args ;;
      esac
      sec=$(python3 -c "import json; print(round(json.load(open('$ws/$stage/history.json'))[0]['seconds'], 1))")
      echo "round $r $mode $stage $sec s/epoch load $(cut -d' ' -f1 /proc/loadavg)" >> /work/runs/acc/speed.log
    done
  done
done
