#!/usr/bin/env bash
# Regenerate the figures README.md shows, from nothing, on the embedded digits data (CPU, a few minutes).
#   bash figures/make_figures.sh            (work files go to ./runs-figures, figures to ./figures)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-runs-figures}
mkdir -p "$WORK" figures

for opt in sgd sam; do  # the single runs the surface, spectrum and interpolation figures use
  landscape train --optimizer "$opt" --epochs 8 --seed 0 -q -o "$WORK/runs/$opt" > /dev/null
done
# the grouped comparison: the four methods with 3 seeds each (few epochs, so this stays a few minutes)
landscape sweep -o "$WORK/sweep" --optimizer sgd,sam,sam-direction,sam-magnitude --rho 0.05 --seeds 0,1,2 \
  --epochs 4 --threads 1 -q > /dev/null
landscape compare-magnitude "$WORK/sweep" --sharpness 512 -q -o "$WORK/compare"
cp "$WORK/compare/groups.png" figures/compare_magnitude.png

landscape sharpness "$WORK/runs/sam/final.pt" --samples 512 --top-k 5 --trace --density -q -o "$WORK/sharpness"
cp "$WORK/sharpness/density.png" figures/esd_sam.png

for opt in sgd sam; do
  landscape plot2d "$WORK/runs/$opt/final.pt" --x -1:1:31 --y -1:1:31 --samples 512 --name "$opt" --label "$opt" --overwrite -q -o "$WORK/surfaces" > /dev/null
done
# redraw both on one colour scale
landscape plot2d --from "$WORK/surfaces/sgd.npz" --from "$WORK/surfaces/sam.npz" --kind contour -q -o "$WORK/surfaces" > /dev/null
cp "$WORK/surfaces/sgd_contour.png" figures/surface2d_sgd.png
cp "$WORK/surfaces/sam_contour.png" figures/surface2d_sam.png

landscape plot1d "$WORK/runs/sgd/ckpts/epoch_000.pt" --to "$WORK/runs/sgd/final.pt" --x -0.5:1.5:41 --samples 512 --name interpolation --label "sgd: init to final" --overwrite -q -o "$WORK/surfaces" > /dev/null
cp "$WORK/surfaces/interpolation.png" figures/interpolation1d.png
landscape plot2d "$WORK/runs/sgd/final.pt" --trajectory "$WORK/runs/sgd/ckpts" --samples 512 --name pca --label "sgd: PCA of its trajectory" --overwrite -q -o "$WORK/surfaces" > /dev/null
cp "$WORK/surfaces/pca_contour.png" figures/pca_trajectory.png
landscape train --model mlp --model-kwargs '{"hidden": [64, 64], "activation": "tanh"}' --loss mse --optimizer gd --lr 0.2 --momentum 0 --weight-decay 0 --batch-size 2048 --epochs 400 --eval-every 100 --track-sharpness 5 --overwrite -q -o "$WORK/runs/eos" > /dev/null && cp "$WORK/runs/eos/sharpness.png" figures/edge_of_stability.png
python benchmarks/bench_connect.py --threads 1 --figure figures/connect_digits_mlp.png --json "$WORK/bench_connect.json" > /dev/null
echo "figures written: $(ls figures/*.png | tr '\n' ' ')"
