#!/usr/bin/env bash
# Makes the retention test vectors: what real restic's `forget` keeps.
#
# Writes backup-core/tests/retention/restic-vectors.json (or the file given
# as $1), which tests/retention.rs replays through `KeepPolicy::decide` and
# compares, case by case, with the set of snapshots restic kept.
#
# What it does:
#   1. Finds a restic of version 0.16 or later: $RESTIC if set, else `restic`
#      on the PATH; if there is none, `apt-get install -y restic`. Debian 12
#      (bookworm) ships restic 0.14, which predates two behaviours that the
#      Rust implementation follows (see the retention module docs): the
#      `unlimited` count (`-1` in `KeepPolicy`) and keeping the oldest
#      snapshot while a bucket still has counts left (both restic 0.16). When
#      the installed restic is older than 0.16, the script fetches Debian 13
#      (trixie)'s restic package with apt-get from the mirror that the
#      machine's own apt sources name for its release (the same mirror, suite
#      trixie), using a private apt state directory under the temporary
#      directory (the system's apt sources and dpkg database are left alone),
#      and unpacks it with `dpkg-deb -x` (restic is a static Go binary; it
#      runs on bookworm).
#   2. With TZ=UTC, creates a temporary repository and makes one snapshot of
#      a tiny directory per time in SNAPSHOTS below, with
#      `restic backup --time ... --host h --tag ...`. The times are fixed (so
#      the vectors are reproducible) and irregular over three years, with
#      same-hour and same-day neighbours, month, leap-day and year
#      boundaries, ISO week 53 of 2020 (2020-12-28 .. 2021-01-03) and
#      2019-12-30 (ISO week 2020-W01 of calendar year 2019), and snapshots
#      on both sides of the keep-within thresholds of the cases below,
#      including thresholds where Go's `AddDate` normalises a day that does
#      not exist (2022-05-31 minus 3 months is "February 31" = March 3).
#   3. For each line of CASES, runs
#      `restic forget --dry-run --json --group-by host <args>` and records
#      the times of the snapshots restic keeps.
#
# All snapshot times are in the past, so restic's "newest snapshot that is
# not in the future" is simply the newest snapshot.
#
# Usage: scripts/make-retention-vectors.sh [OUTPUT]
# Needs: bash, jq, apt-get and dpkg-deb (Debian), network access to
# Debian's package archive when restic >= 0.16 is not installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$(dirname "$here")/backup-core/tests/retention/restic-vectors.json}"
export TZ=UTC

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The snapshots, a month a line (a month may go on over several lines):
# YYYY-MM, then one DDTHH:MM:SS (UTC) per snapshot, +TAG,TAG... after the
# time of one with restic tags.
SNAPSHOTS='
2019-06 15T08:00:00+keep
2019-07 04T12:25:41 14T15:18:15 27T02:55:18
2019-08 21T08:57:23
2019-09 12T22:01:38 24T15:28:41
2019-10 06T23:09:21 17T17:46:46 28T00:49:21
2019-11 10T10:15:30
2019-12 06T13:51:49 29T22:00:00 30T09:15:00 31T23:59:59+env=prod
2020-01 01T00:00:00 02T11:02:55 17T22:09:30 29T16:13:09
2020-02 14T07:56:43 28T12:00:00 29T12:00:00+keep
2020-03 01T00:30:00 07T18:26:20 31T05:45:35
2020-04 15T04:34:50 26T22:54:23
2020-05 21T09:40:51
2020-06 09T04:44:58
2020-07 04T17:55:46 23T22:55:17
2020-08 15T00:37:21
2020-09 10T19:28:17 30T06:12:39
2020-10 25T01:04:08
2020-11 05T03:21:38 16T05:08:22
2020-12 27T18:00:00 28T07:00:00 31T23:30:00+keep,env=prod
2021-01 01T00:30:00 03T23:00:00+keep 04T00:10:00 09T03:00:00 22T12:45:00
2021-02 04T10:07:00 11T00:29:00 19T19:36:00
2021-03 04T20:49:00 15T01:36:00 24T14:01:00
2021-04 06T16:11:00 20T04:46:00 30T09:38:00
2021-05 13T02:55:00 25T14:38:00 31T12:00:00
2021-06 01T00:00:00+env=prod 06T21:47:00 14T02:56:00 24T00:10:00 30T16:03:00
2021-07 15T21:19:00 25T21:28:00
2021-08 07T14:51:00 23T09:11:00
2021-09 01T08:05:00 16T03:46:00
2021-10 03T02:49:00 17T00:40:00 31T13:05:00
2021-11 13T01:11:00 26T21:36:00 30T18:00:00
2021-12 01T06:00:00 12T17:50:00 31T20:00:00
2022-01 01T09:00:00 02T15:00:00 03T08:00:00 17T04:00:00
2022-02 08T21:00:00 27T10:00:00 28T10:00:00 28T13:00:00+env=prod
2022-03 01T09:00:00 02T09:00:00 03T11:00:00 03T13:00:00 04T09:00:00
2022-03 21T12:00:00+keep 21T12:00:01
2022-04 02T06:00:00 15T14:20:00 29T23:10:00
2022-05 06T07:45:00
2022-05 10T01:00:00 10T02:06:00 10T03:42:00 10T09:16:00 10T12:39:00 10T13:43:00 10T21:22:00
2022-05 11T17:31:00 12T04:53:00 12T21:23:00 13T00:30:00 14T02:59:00
2022-05 15T05:29:00 15T16:34:00 15T21:40:00 16T14:27:00
2022-05 17T01:57:00 17T07:30:00+keep 17T08:43:00 18T15:06:00 18T20:50:00
2022-05 20T03:48:00 20T05:36:00 21T11:55:00 21T15:39:00 22T03:12:00 22T20:10:00
2022-05 23T01:32:00 23T09:06:00 24T15:55:00 25T22:16:00
2022-05 26T05:55:00 26T13:46:00+keep,env=prod 26T21:38:00 27T18:25:00 28T01:37:00 29T08:08:00
2022-05 30T00:54:00 30T01:55:00 30T10:05:00+env=prod 30T10:40:00 30T13:25:00
2022-05 31T00:37:00 31T11:20:00 31T12:00:00
'

# One `restic forget` policy per line (word-split; no quoting needed).
CASES='
--keep-last 3
--keep-last 200
--keep-hourly 10
--keep-daily 7
--keep-weekly 5
--keep-monthly 12
--keep-yearly 3
--keep-yearly 10
--keep-monthly 100
--keep-daily unlimited
--keep-weekly unlimited
--keep-monthly unlimited --keep-last 3
--keep-within 2m10d
--keep-within 3m
--keep-within 10d12h
--keep-within 1y
--keep-within-hourly 3d
--keep-within-daily 30d
--keep-within-weekly 6m
--keep-within-monthly 1y
--keep-within-yearly 2y
--keep-tag keep
--keep-tag env=prod
--keep-tag keep,env=prod
--keep-tag keep --keep-tag env=prod
--keep-tag keep --keep-last 1
--keep-last 2 --keep-daily 5 --keep-weekly 4 --keep-monthly 6 --keep-yearly 2
--keep-hourly 24 --keep-within-daily 30d
--keep-within 2m10d --keep-weekly 8
--keep-daily 10 --keep-within-weekly 6m --keep-within-monthly 2y --keep-tag keep
--keep-hourly 5 --keep-daily 5 --keep-weekly 5 --keep-monthly 5 --keep-yearly 5 --keep-within 5d
'

# --- restic -------------------------------------------------------------

version_of() { "$1" version | awk '{print $2}'; }
new_enough() { # restic >= 0.16
    local major minor
    IFS=. read -r major minor _ <<<"$1"
    [ "$major" -gt 0 ] || [ "$minor" -ge 16 ]
}

restic="${RESTIC:-}"
if [ -z "$restic" ]; then
    if ! command -v restic >/dev/null 2>&1; then
        echo "== installing restic from Debian" >&2
        apt-get install -y restic >&2
    fi
    restic="$(command -v restic)"
fi
if ! command -v jq >/dev/null 2>&1; then
    apt-get install -y jq >&2
fi
if ! new_enough "$(version_of "$restic")"; then
    echo "== $restic is $(version_of "$restic") (< 0.16): fetching Debian trixie's restic" >&2
    apt_dir="$work/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$apt_dir/deb"
    # The mirror this machine's own release comes from, as its apt sources
    # name it: only the suite differs.
    # shellcheck source=/dev/null
    release="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's field, not a command
    mirror="$(apt-get indextargets --format '$(REPO_URI)' "Release: $release" \
        "Component: main" "Identifier: Packages" "Target-Of: deb" | awk 'NR == 1')"
    if [ -z "$mirror" ]; then
        echo "error: no apt source of this machine serves '$release main';" \
            "install restic >= 0.16 and set RESTIC" >&2
        exit 1
    fi
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
        >"$apt_dir/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=$apt_dir/parts"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" update >&2
    (cd "$apt_dir/deb" && apt-get "${apt_opts[@]}" download restic >&2)
    dpkg-deb -x "$apt_dir"/deb/restic_*.deb "$apt_dir/root"
    restic="$apt_dir/root/usr/bin/restic"
fi
restic_version="$(version_of "$restic")"
new_enough "$restic_version" || {
    echo "error: need restic >= 0.16, have $restic_version" >&2
    exit 1
}
echo "== using restic $restic_version ($restic)" >&2

# --- snapshots ----------------------------------------------------------

export RESTIC_REPOSITORY="$work/repo"
export RESTIC_PASSWORD=x
export RESTIC_CACHE_DIR="$work/cache"
"$restic" init --quiet >/dev/null
mkdir -p "$work/src"
echo "hello" >"$work/src/file.txt"

snapshots_json='[]'
count=0
while read -r month stamps; do
    [ -n "$month" ] || continue
    read -r -a stamps <<<"$stamps"
    for stamp in "${stamps[@]}"; do
        tags=""
        [ "${stamp#*+}" = "$stamp" ] || tags="${stamp#*+}"
        time="$month-${stamp%%+*}" # YYYY-MM-DDTHH:MM:SS
        tag_args=()
        [ -z "$tags" ] || tag_args=(--tag "$tags")
        "$restic" backup --quiet --time "${time/T/ }" --host h "${tag_args[@]}" "$work/src" >/dev/null
        snapshots_json="$(jq -c --arg time "${time}Z" --arg tags "$tags" \
            '. + [{time: $time, tags: ($tags | split(",") | map(select(. != "")))}]' \
            <<<"$snapshots_json")"
        count=$((count + 1))
    done
done <<<"$SNAPSHOTS"
echo "== made $count snapshots" >&2

# restic prints times like 2021-01-01T00:30:00Z (TZ=UTC); normalise anyway
# to second precision with a Z suffix, matching the "time" of SNAPSHOTS.
normalise='sub("\\.[0-9]+"; "") | sub("\\+00:00$"; "Z")'
stored="$("$restic" snapshots --json | jq -c "[.[].time | $normalise] | sort")"
expected="$(jq -c '[.[].time] | sort' <<<"$snapshots_json")"
if [ "$stored" != "$expected" ]; then
    echo "error: restic stored other times than asked for:" >&2
    diff <(jq -r '.[]' <<<"$expected") <(jq -r '.[]' <<<"$stored") >&2 || true
    exit 1
fi

# --- cases --------------------------------------------------------------

cases_json='[]'
while read -r line; do
    [ -n "$line" ] || continue
    read -r -a args <<<"$line"
    result="$("$restic" forget --dry-run --json --group-by host "${args[@]}")"
    groups="$(jq 'length' <<<"$result")"
    [ "$groups" = 1 ] || {
        echo "error: expected one group for $line, got $groups" >&2
        exit 1
    }
    keep="$(jq -c "[.[0].keep // [] | .[].time | $normalise] | sort" <<<"$result")"
    echo "   $line: keeps $(jq length <<<"$keep")" >&2
    args_json="$(printf '%s\n' "${args[@]}" | jq -R . | jq -sc .)"
    cases_json="$(jq -c --argjson args "$args_json" --argjson keep "$keep" \
        '. + [{args: $args, keep: $keep}]' <<<"$cases_json")"
done <<<"$CASES"

mkdir -p "$(dirname "$out")"
jq -n --arg version "$restic_version" --argjson snapshots "$snapshots_json" \
    --argjson cases "$cases_json" \
    '{restic_version: $version, generated_by: "scripts/make-retention-vectors.sh",
      timezone: "UTC", group_by: "host", snapshots: $snapshots, cases: $cases}' >"$out"
echo "== wrote $out" >&2
