# The default model's data, shared by scripts/train_default_model.sh (CPU) and
# scripts/train_default_gpu.sh (one GPU): source it, then `default_data PHOTOS_DIR`.
#   datasets/photos_train_sub      PHOTOS_DIR/train less the three selection photos, as sub-images
#   datasets/photos_train_ms_sub   the same photos also at 1/2 and 1/3 scale (stage 16 on)
#   datasets/photos_select_bands   the selection photos' clean / mild / heavy crops (validation)
# Needs the package importable by $PY (default: python).
DEFAULT_SELECT="Bridge_by_Sander_Klootwijk.png LadyBird.png Wine_by_Jakkub_Mede.png"
default_data() {
  local photos=$1 py=${PY:-python} f name dest
  if [ ! -d datasets/photos_train_sub ]; then
    [ -d "$photos/train" ] || { echo "default_data: no folder $photos/train (give the photos folder as the first argument)" >&2; return 1; }
    mkdir -p datasets/photos_train datasets/photos_select
    for f in "$photos"/train/*; do
      name=$(basename "$f")
      case " $DEFAULT_SELECT " in *" $name "*) dest=datasets/photos_select ;; *) dest=datasets/photos_train ;; esac
      ln -sf "$(cd "$(dirname "$f")" && pwd)/$name" "$dest/$name"
    done
    "$py" -m kdsr_model.prepare_data --hr datasets/photos_train --out datasets/photos_train_sub
  fi
  [ -d datasets/photos_train_ms_sub ] || \
    "$py" -m kdsr_model.prepare_data --hr datasets/photos_train --out datasets/photos_train_ms_sub --scales 1,0.5,0.333
  [ -d datasets/photos_select_bands ] || \
    "$py" -m kdsr_model.testset --hr datasets/photos_select --out datasets/photos_select_bands --protocol bands --crop 384
}
