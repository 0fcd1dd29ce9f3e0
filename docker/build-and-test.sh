#!/usr/bin/env bash
# Build the nmflow image and check it against a local run of the demo.
#
# Usage: docker/build-and-test.sh [options]
#
#   --engine docker|podman   container engine (default: docker when its daemon answers, else podman, with
#                            docker/containers.conf as CONTAINERS_CONF unless that is set)
#   --base-image NAME        Debian 12 base image (default: debian:bookworm-slim when it can be pulled;
#                            otherwise a local one, localhost/bookworm-min, made once from
#                            `debootstrap --variant=minbase bookworm` and imported: needs root and debootstrap)
#   --ca-bundle FILE         PEM CA bundle for a TLS-intercepting proxy (pip in the build stage; default none)
#   --atlas-dir DIR          atlas folder copied into the image and used by the local run (default:
#                            $NMFLOW_ATLAS_DIR, else ../shared/atlases beside the repository; without one the
#                            image fetches the atlases with nilearn and both demo runs use the toy atlas)
#   --torch-wheel FILE       torch wheel to install (default: PyTorch's CPU index when it answers, else the
#                            wheel `pip download torch==VERSION` gives the local virtualenv, e.g. from its cache)
#   --no-constraints         let pip resolve the image's packages afresh (default: pin them to the local
#                            virtualenv's `pip freeze`, so that both runs use the same versions)
#   --work DIR               scratch folder (default: a new temporary one, removed at the end unless --keep)
#   --keep                   keep the scratch folder (build context, both demo runs, logs)
#   --local-output DIR       reuse a finished local demo run (`python -m nmflow.demo DIR`) instead of running it
#   --skip-demo              build and run `nmflow --version` only
#   --skip-readonly          skip the read-only, unprivileged run (Apptainer's way)
#   --tag NAME               image name (default nmflow:VERSION)
#
# Steps: build the image (time and size), `nmflow --version` inside it, the demo's simulated study, the
# demo locally on it (the repository's .venv, made with `make install` when missing), the demo inside the
# image with that simulated data bind-mounted read-only and an output folder bind-mounted read-write, as
# the calling user; then once more the way Apptainer runs an image (read-only root file system, a user id
# that is not the image's, $HOME not writable, only the bind mounts and /tmp writable). Each containerised
# output tree must exist, be owned by the user that ran it and equal the local one
# (benchmarks/compare_outputs.py's compare_runs: same files, TSV and JSON numbers within 1e-12, PNG pixels,
# other files byte for byte; dataset_description.json, which records the call's own folders (/out/... in
# the image) and the container, is left out; the group's model files are compared without the Python release
# they record). Differences that two runs of one call have by design are listed as expected, with their
# reason, and do not fail the check: the call logs (logs/nmflow-<level>-<time>-<id>.yml and .log, named after the
# call's time) and the participant reports' About rows with the command line and the date (both runs get
# SOURCE_DATE_EPOCH, so the dates agree and only the command line differs: /out in the image).
# Prints the image size and the containerised / local time ratios.
# Exit code 0 when everything holds, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/nmflow/__init__.py")"
ENGINE="" BASE_IMAGE="" CA_BUNDLE="" ATLAS_DIR="${NMFLOW_ATLAS_DIR:-}" TORCH_WHEEL="" CONSTRAINTS=1
WORK="" KEEP=0 LOCAL_OUTPUT="" SKIP_DEMO=0 SKIP_READONLY=0 TAG="nmflow:$VERSION"
TORCH_VERSION=2.13.0 TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
LOCAL_BASE=localhost/bookworm-min
RO_UID=12345   # the read-only run's user id when this script runs as root (else the caller's own)

die() { echo "build-and-test: $*" >&2; exit 1; }
say() { echo "== $*"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE="$2"; shift ;;
    --base-image) BASE_IMAGE="$2"; shift ;;
    --ca-bundle) CA_BUNDLE="$(realpath "$2")"; shift ;;
    --atlas-dir) ATLAS_DIR="$2"; shift ;;
    --torch-wheel) TORCH_WHEEL="$(realpath "$2")"; shift ;;
    --no-constraints) CONSTRAINTS=0 ;;
    --work) WORK="$2"; shift ;;
    --keep) KEEP=1 ;;
    --local-output) LOCAL_OUTPUT="$(realpath "$2")"; shift ;;
    --skip-demo) SKIP_DEMO=1 ;;
    --skip-readonly) SKIP_READONLY=1 ;;
    --tag) TAG="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

# --- engine ------------------------------------------------------------------------------------------------
if [ -z "$ENGINE" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null; then ENGINE=podman
  else die "neither a docker daemon nor podman here; on Debian 12: apt-get install -y --no-install-recommends \
podman buildah debootstrap crun runc fuse-overlayfs slirp4netns uidmap containernetworking-plugins catatonit"
  fi
fi
if [ "$ENGINE" = podman ]; then export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"; fi
[ -n "$ATLAS_DIR" ] || { [ -d "$REPO/../shared/atlases" ] && ATLAS_DIR="$REPO/../shared/atlases"; } || true
[ -z "$ATLAS_DIR" ] || ATLAS_DIR="$(realpath "$ATLAS_DIR")"

if [ -z "$WORK" ]; then WORK="$(mktemp -d "${TMPDIR:-/tmp}/nmflow-container.XXXXXX")"; fi
mkdir -p "$WORK"; WORK="$(realpath "$WORK")"
cleanup() { if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept: $WORK"; fi; }
trap cleanup EXIT
chmod 755 "$WORK"   # the read-only run's user must reach its bind mounts inside it

LOCAL_PY="$REPO/.venv/bin/python"
if [ ! -x "$LOCAL_PY" ]; then
  say "no .venv in $REPO: make install"
  make -C "$REPO" install >"$WORK/make-install.log" 2>&1 || { tail -20 "$WORK/make-install.log"; die "make install failed"; }
fi
export NIPYPE_NO_ET=1
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date +%s)}"   # one date in every report of every run
seconds() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# --- base image ----------------------------------------------------------------------------------------------
debian_mirror() {  # the Debian mirror this machine's apt uses (one-line and deb822 sources)
  { grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | grep -v security | awk '$0 ~ /bookworm/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}'
    awk 'BEGIN {RS = ""} /Suites:[^\n]*bookworm/ && !/security/ {
           if (match($0, /URIs:[[:space:]]*[^[:space:]]+/)) {split(substr($0, RSTART, RLENGTH), a, /[[:space:]]+/); print a[2]}}' \
      /etc/apt/sources.list.d/*.sources 2>/dev/null
  } | head -1
}
make_local_base() {  # localhost/bookworm-min: debootstrap --variant=minbase bookworm, trimmed, imported
  [ "$(id -u)" = 0 ] || die "making the local base image needs root (debootstrap); or pass --base-image"
  command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"
  local mirror rootfs
  mirror="$(debian_mirror)"; mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$WORK/rootfs"
  say "base image: debootstrap --variant=minbase bookworm from $mirror (about 1 min)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  # What debian:bookworm-slim leaves out, now and for later apt installs (copyright files stay).
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  tar -C "$rootfs" -c . | "$ENGINE" import - "$LOCAL_BASE" >"$WORK/import.log" 2>&1 \
    || { tail -5 "$WORK/import.log"; die "$ENGINE import failed"; }
  rm -rf "$rootfs"
}
if [ -z "$BASE_IMAGE" ]; then
  if "$ENGINE" image inspect debian:bookworm-slim >/dev/null 2>&1 \
     || timeout 120 "$ENGINE" pull debian:bookworm-slim >"$WORK/pull.log" 2>&1; then
    BASE_IMAGE=debian:bookworm-slim
  else
    say "debian:bookworm-slim cannot be pulled ($(tail -1 "$WORK/pull.log" | cut -c1-120))"
    "$ENGINE" image inspect "$LOCAL_BASE" >/dev/null 2>&1 || make_local_base
    BASE_IMAGE="$LOCAL_BASE"
  fi
fi
say "engine $ENGINE, base image $BASE_IMAGE"

# --- build context: the source tree plus docker/context/ (atlases, torch wheel, constraints, CA bundle) --------
CTX="$WORK/context"
rm -rf "$CTX"; mkdir -p "$CTX"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$REPO" ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md nmflow docker .dockerignore \
    | (cd "$REPO" && tar --null -T - -cf -) | tar -C "$CTX" -xf -
  REVISION="$(git -C "$REPO" rev-parse HEAD)"
  SOURCE_URL="$(git -C "$REPO" remote get-url origin 2>/dev/null || true)"
else
  cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/nmflow" "$REPO/docker" "$REPO/.dockerignore" "$CTX/"
  REVISION="" SOURCE_URL=""
fi
case "$SOURCE_URL" in https://*|http://*) ;; *) SOURCE_URL="" ;; esac   # a label, not a local path
EXTRA="$CTX/docker/context"
mkdir -p "$EXTRA"
ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" --build-arg "SOURCE_URL=$SOURCE_URL"
      --build-arg "IMAGE_TAG=$TAG" --build-arg "REVISION=$REVISION" --build-arg "TORCH_VERSION=$TORCH_VERSION")
if [ -n "$ATLAS_DIR" ]; then
  cp -r "$ATLAS_DIR" "$EXTRA/atlases"
  ARGS+=(--build-arg ATLAS_SOURCE=context)
else
  ARGS+=(--build-arg ATLAS_SOURCE=nilearn)
fi
if [ -n "$CA_BUNDLE" ]; then
  cp "$CA_BUNDLE" "$EXTRA/ca-bundle.crt"
  ARGS+=(--build-arg CA_BUNDLE=ca-bundle.crt)
fi
torch_index_answers() {
  "$LOCAL_PY" - "$TORCH_INDEX_URL/torch/" "$CA_BUNDLE" <<'EOF'
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2] or None)
try:
    urllib.request.urlopen(sys.argv[1], timeout=15, context=context).close()
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}"[:160])
    sys.exit(1)
EOF
}
if [ -z "$TORCH_WHEEL" ] && ! why="$(torch_index_answers)"; then
  say "$TORCH_INDEX_URL does not answer ($why): the torch wheel comes from pip download"
  "$LOCAL_PY" -m pip download --quiet --no-deps "torch==$TORCH_VERSION" -d "$WORK/wheel" >"$WORK/pip-download.log" 2>&1 \
    || { tail -5 "$WORK/pip-download.log"; die "pip download torch==$TORCH_VERSION failed: pass --torch-wheel"; }
  TORCH_WHEEL="$(ls "$WORK"/wheel/torch-*.whl | head -1)"
fi
if [ -n "$TORCH_WHEEL" ]; then
  case "$(basename "$TORCH_WHEEL")" in *+cpu*) ;; *) echo "warning: $(basename "$TORCH_WHEEL") is not a CPU build" ;; esac
  cp "$TORCH_WHEEL" "$EXTRA/"
  ARGS+=(--build-arg "TORCH_WHEEL=$(basename "$TORCH_WHEEL")")
fi
if [ "$CONSTRAINTS" = 1 ]; then
  "$LOCAL_PY" -m pip freeze --exclude-editable | grep -vE '^(nmflow|torch)([ =@]|$)| @ ' >"$EXTRA/constraints.txt"
  ARGS+=(--build-arg PIP_CONSTRAINTS=constraints.txt)
fi

# --- build -------------------------------------------------------------------------------------------------------
say "building $TAG (log: $WORK/build.log)"
t0="$(seconds)"
if ! "$ENGINE" build -f "$CTX/docker/Dockerfile" -t "$TAG" "${ARGS[@]}" "$CTX" >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log"; die "the image build failed"
fi
BUILD_S="$(elapsed "$t0" "$(seconds)")"
SIZE_B="$("$ENGINE" image inspect "$TAG" --format '{{.Size}}')"
SIZE="$(python3 -c "import sys; b = int(sys.argv[1]); print(f'{b / 1e6:.0f} MB ({b / 2**20:.0f} MiB)')" "$SIZE_B")"
say "built $TAG in $BUILD_S s: $SIZE"
rm -rf "$CTX"
VERSION_LINE="$("$ENGINE" run --rm "$TAG" --version)"
[ "$VERSION_LINE" = "nmflow $VERSION" ] || die "nmflow --version in the image printed '$VERSION_LINE'"
say "nmflow --version in the image: $VERSION_LINE"
RO_VERSION="$("$ENGINE" run --rm --read-only --user "$RO_UID:$RO_UID" -e HOME=/nonexistent "$TAG" --version)"
[ "$RO_VERSION" = "nmflow $VERSION" ] || die "nmflow --version, read-only as $RO_UID, printed '$RO_VERSION'"
if [ "$SKIP_DEMO" = 1 ]; then
  echo "image $TAG: $SIZE; nmflow --version: $VERSION_LINE (demo skipped)"
  exit 0
fi

# --- the demo, locally and in the image -----------------------------------------------------------------------------
if [ -n "$ATLAS_DIR" ]; then LOCAL_ATLAS_ENV=(NMFLOW_ATLAS_DIR="$ATLAS_DIR"); CONTAINER_ATLAS_ENV=()
else LOCAL_ATLAS_ENV=(-u NMFLOW_ATLAS_DIR); CONTAINER_ATLAS_ENV=(-e NMFLOW_ATLAS_DIR=); fi
if [ -n "$LOCAL_OUTPUT" ]; then
  LOCAL="$LOCAL_OUTPUT"; LOCAL_S=""
  [ -d "$LOCAL/nmflow/group" ] || die "$LOCAL holds no finished demo run"
else
  LOCAL="$WORK/local"
  # The demo's own simulation call (nmflow/demo.py), made first so that every timed run processes the
  # same existing data: the demo simulates only when OUT/fmriprep is missing.
  if [ -n "$ATLAS_DIR" ]; then SIM=(--grid 4 --atlas-dir "$ATLAS_DIR"); else SIM=(--grid tiny); fi
  say "simulated study: nmflow simulate $LOCAL/fmriprep ${SIM[*]} --seed 0 (log: $WORK/simulate.log)"
  t0="$(seconds)"
  "$REPO/.venv/bin/nmflow" simulate "$LOCAL/fmriprep" "${SIM[@]}" --seed 0 >"$WORK/simulate.log" 2>&1 \
    || { tail -30 "$WORK/simulate.log"; die "the simulation failed"; }
  SIM_S="$(elapsed "$t0" "$(seconds)")"
  say "demo, local: $LOCAL_PY -m nmflow.demo $LOCAL (log: $WORK/local.log)"
  t0="$(seconds)"
  env "${LOCAL_ATLAS_ENV[@]}" "$LOCAL_PY" -m nmflow.demo "$LOCAL" >"$WORK/local.log" 2>&1 \
    || { tail -30 "$WORK/local.log"; die "the local demo failed"; }
  LOCAL_S="$(elapsed "$t0" "$(seconds)")"
  LOCAL_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
  ! grep -q '^simulating' "$WORK/local.log" || die "the local demo simulated again: its simulation call changed"
  say "local demo: $LOCAL_S s (simulation before it: $SIM_S s)"
fi

# run_demo NAME UID:GID ENGINE-OPTIONS...: the demo in the image, its simulated data the local run's (read-only)
run_demo() {
  local name="$1" user="$2"; shift 2
  local out="$WORK/$name"
  rm -rf "$out"; mkdir -p "$out"
  chown "$user" "$out" 2>/dev/null || true
  say "demo, $name: --user $user $* (log: $WORK/$name.log)"
  local t0; t0="$(seconds)"
  "$ENGINE" run --rm --user "$user" "$@" "${CONTAINER_ATLAS_ENV[@]}" -e SOURCE_DATE_EPOCH \
    -v "$out:/out" -v "$LOCAL/fmriprep:/out/fmriprep:ro" -v "$LOCAL/fmriprep_truth:/out/fmriprep_truth:ro" \
    --entrypoint python "$TAG" -m nmflow.demo /out >"$WORK/$name.log" 2>&1 \
    || { tail -30 "$WORK/$name.log"; die "the demo failed in the image ($name)"; }
  echo "$(elapsed "$t0" "$(seconds)") s (load average after it: $(cut -d' ' -f1-3 /proc/loadavg))" >"$WORK/$name.seconds"
  say "$name demo: $(cat "$WORK/$name.seconds")"
}
USERNS=()
if [ "$ENGINE" = podman ] && [ "$(id -u)" != 0 ]; then USERNS=(--userns=keep-id); fi   # rootless podman
ME="$(id -u):$(id -g)"
run_demo container "$ME" "${USERNS[@]}"
RUNS=(container)
if [ "$SKIP_READONLY" = 0 ]; then
  if [ "$(id -u)" = 0 ]; then RO_USER="$RO_UID:$RO_UID"; else RO_USER="$ME"; fi
  # Apptainer's way: read-only image, a user the image does not know, $HOME not writable (nor existing),
  # writable /tmp and bind mounts only.
  run_demo readonly "$RO_USER" "${USERNS[@]}" --read-only -e HOME=/nonexistent
  RUNS+=(readonly)
fi

# compare_with_local DIR: benchmarks/compare_outputs.py's compare_runs on the local and DIR output trees
# (expected differences listed apart, with their reason). Left out:
# dataset_description.json (it names the call's own folders and, in the image, the container); the group's model
# files are compared without the Python release they record (the image runs Debian's Python 3.11, the
# local virtualenv whichever 3.11 made it).
compare_with_local() {
  "$LOCAL_PY" - "$REPO/benchmarks" "$LOCAL/nmflow" "$1" <<'EOF'
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from compare_outputs import compare_json, compare_runs
old, new = Path(sys.argv[2]), Path(sys.argv[3])
models = "group/*_model.json"
result = compare_runs(old, new, 1e-12, ("dataset_description.json", models))
problems = result.problems
pythons, equal_models = set(), 0
for rel in sorted({p.relative_to(old) for p in old.glob(models)} | {p.relative_to(new) for p in new.glob(models)}):
    if not (old / rel).exists() or not (new / rel).exists():
        problems.append(f"only in {'NEW' if (new / rel).exists() else 'OLD'}: {rel}")
        continue
    a, b = (json.loads((root / rel).read_bytes()) for root in (old, new))
    pythons.add(f"{a.get('versions', {}).pop('python', '?')} vs {b.get('versions', {}).pop('python', '?')}")
    why, _ = compare_json(json.dumps(a).encode(), json.dumps(b).encode(), 1e-12)
    if why:
        problems.append(f"differs: {rel}: {why}")
    else:
        equal_models += 1
for line in problems:
    print(line)
print(f"{result.summary()}; {equal_models} model files equal but for the Python release "
      f"({', '.join(sorted(pythons)) or 'none'})")
sys.exit(1 if problems else 0)
EOF
}

# --- checks --------------------------------------------------------------------------------------------------------
status=0
owner_of() { case "$1" in container) echo "${ME%%:*}" ;; readonly) echo "${RO_USER%%:*}" ;; esac; }
for name in "${RUNS[@]}"; do
  out="$WORK/$name/nmflow"
  n_files="$(find "$out" -type f | wc -l)"
  missing=""
  for f in group/selection.tsv group/group_report.html; do [ -s "$out/$f" ] || missing+=" $f"; done
  ls "$out"/sub-*.html >/dev/null 2>&1 || missing+=" sub-*.html"
  uid="$(owner_of "$name")"
  foreign="$(find "$WORK/$name/nmflow" "$WORK/$name/work" ! -uid "$uid" | wc -l)"
  if [ -n "$missing" ] || [ "$n_files" = 0 ]; then echo "$name: missing outputs:$missing"; status=1; fi
  if [ "$foreign" != 0 ]; then echo "$name: $foreign files or folders not owned by uid $uid"; status=1; fi
  if complaints="$(grep -E 'Read-only file system|Permission denied|created a temporary' "$WORK/$name.log")"; then
    echo "$name: something wanted to write outside the bind mounts and /tmp:"; echo "$complaints" | head -5; status=1
  fi
  verdict="$(compare_with_local "$out" 2>&1)" || { echo "$verdict" | head -20; status=1; }
  printf '%s\n' "$verdict" | tail -1 >"$WORK/$name.compare"
  echo "$n_files files, owned by uid $uid: $foreign exceptions" >"$WORK/$name.owner"
done

echo
echo "image            : $TAG, $SIZE (engine $ENGINE, base $BASE_IMAGE, built in $BUILD_S s)"
echo "nmflow --version : $VERSION_LINE (also read-only as uid $RO_UID)"
echo "demo, local      : ${LOCAL_S:-reused $LOCAL} s (load average after it: ${LOCAL_LOAD:-n/a}; every demo run on the same simulated data, made in ${SIM_S:-an earlier run} s)"
for name in "${RUNS[@]}"; do
  s="$(cut -d' ' -f1 "$WORK/$name.seconds")"
  ratio="n/a"
  [ -z "$LOCAL_S" ] || ratio="$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$s" "$LOCAL_S")"
  printf 'demo, %-11s: %s, containerised / local time %s\n    outputs: %s\n    vs local: %s\n' \
    "$name" "$(cat "$WORK/$name.seconds")" "$ratio" "$(cat "$WORK/$name.owner")" "$(cat "$WORK/$name.compare")"
done
[ "$status" = 0 ] && echo "OK" || echo "FAILED"
exit "$status"
