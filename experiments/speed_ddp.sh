#!/bin/bash
# One teacher epoch and one student epoch under torchrun, 2 processes x 1 thread (see speed.sh).
cd "$(dirname "$0")/.."
for stage in train-teacher distill; do
  ws=/work/runs/acc/speed_ddp_${stage}
  rm -rf "$ws"; mkdir -p "$ws"
  for s in download featurize; do ln -s /work/runs/acc/base/$s "$ws/$s"; done
  [ "$stage" = distill ] && cp -r /work/runs/acc/t_os2/train-teacher "$ws/train-teacher"
  [ "$stage" = train-teacher ] && extra="--set train_teacher.epochs=1 --set train_teacher.oversample_unknown=1" || extra=""
  OMP_NUM_THREADS=1 timeout 900 .venv/bin/python -m torch.distributed.run --nproc_per_node=2 -m bifsmn_cli --quiet run \
    -c experiments/sc_real_10_x.yaml --set download.path=/work/shared/data/speech-commands-real --set workspace=$ws \
    --to $stage --set train_teacher.oversample_unknown=2 --set distill.epochs=1 $extra
  sec=$(python3 -c "import json; print(round(json.load(open('$ws/$stage/history.json'))[0]['seconds'], 1))")
  echo "round 1 ddp $stage $sec s/epoch load $(cut -d' ' -f1 /proc/loadavg)" >> /work/runs/acc/speed.log
done
