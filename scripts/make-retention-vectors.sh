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
#      (trixie)'s restic package with apt-get, using a private apt state
#      directory under the temporary directory (the system's apt sources and
#      dpkg database are left alone), and unpacks it with `dpkg-deb -x`
#      (restic is a static Go binary; it runs on bookworm).
#   2. With TZ=UTC, creates a temporary repository and makes one snapshot of
#      a tiny directory per line of SNAPSHOTS below, with
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

# Snapshot time (UTC) | comma-separated restic tags.
SNAPSHOTS='
2019-06-15 08:00:00|keep
2019-07-04 12:25:41|
2019-07-14 15:18:15|
2019-07-27 02:55:18|
2019-08-21 08:57:23|
2019-09-12 22:01:38|
2019-09-24 15:28:41|
2019-10-06 23:09:21|
2019-10-17 17:46:46|
2019-10-28 00:49:21|
2019-11-10 10:15:30|
2019-12-06 13:51:49|
2019-12-29 22:00:00|
2019-12-30 09:15:00|
2019-12-31 23:59:59|env=prod
2020-01-01 00:00:00|
2020-01-02 11:02:55|
2020-01-17 22:09:30|
2020-01-29 16:13:09|
2020-02-14 07:56:43|
2020-02-28 12:00:00|
2020-02-29 12:00:00|keep
2020-03-01 00:30:00|
2020-03-07 18:26:20|
2020-03-31 05:45:35|
2020-04-15 04:34:50|
2020-04-26 22:54:23|
2020-05-21 09:40:51|
2020-06-09 04:44:58|
2020-07-04 17:55:46|
2020-07-23 22:55:17|
2020-08-15 00:37:21|
2020-09-10 19:28:17|
2020-09-30 06:12:39|
2020-10-25 01:04:08|
2020-11-05 03:21:38|
2020-11-16 05:08:22|
2020-12-27 18:00:00|
2020-12-28 07:00:00|
2020-12-31 23:30:00|keep,env=prod
2021-01-01 00:30:00|
2021-01-03 23:00:00|keep
2021-01-04 00:10:00|
2021-01-09 03:00:00|
2021-01-22 12:45:00|
2021-02-04 10:07:00|
2021-02-11 00:29:00|
2021-02-19 19:36:00|
2021-03-04 20:49:00|
2021-03-15 01:36:00|
2021-03-24 14:01:00|
2021-04-06 16:11:00|
2021-04-20 04:46:00|
2021-04-30 09:38:00|
2021-05-13 02:55:00|
2021-05-25 14:38:00|
2021-05-31 12:00:00|
2021-06-01 00:00:00|env=prod
2021-06-06 21:47:00|
2021-06-14 02:56:00|
2021-06-24 00:10:00|
2021-06-30 16:03:00|
2021-07-15 21:19:00|
2021-07-25 21:28:00|
2021-08-07 14:51:00|
2021-08-23 09:11:00|
2021-09-01 08:05:00|
2021-09-16 03:46:00|
2021-10-03 02:49:00|
2021-10-17 00:40:00|
2021-10-31 13:05:00|
2021-11-13 01:11:00|
2021-11-26 21:36:00|
2021-11-30 18:00:00|
2021-12-01 06:00:00|
2021-12-12 17:50:00|
2021-12-31 20:00:00|
2022-01-01 09:00:00|
2022-01-02 15:00:00|
2022-01-03 08:00:00|
2022-01-17 04:00:00|
2022-02-08 21:00:00|
2022-02-27 10:00:00|
2022-02-28 10:00:00|
2022-02-28 13:00:00|env=prod
2022-03-01 09:00:00|
2022-03-02 09:00:00|
2022-03-03 11:00:00|
2022-03-03 13:00:00|
2022-03-04 09:00:00|
2022-03-21 12:00:00|keep
2022-03-21 12:00:01|
2022-04-02 06:00:00|
2022-04-15 14:20:00|
2022-04-29 23:10:00|
2022-05-06 07:45:00|
2022-05-10 01:00:00|
2022-05-10 02:06:00|
2022-05-10 03:42:00|
2022-05-10 09:16:00|
2022-05-10 12:39:00|
2022-05-10 13:43:00|
2022-05-10 21:22:00|
2022-05-11 17:31:00|
2022-05-12 04:53:00|
2022-05-12 21:23:00|
2022-05-13 00:30:00|
2022-05-14 02:59:00|
2022-05-15 05:29:00|
2022-05-15 16:34:00|
2022-05-15 21:40:00|
2022-05-16 14:27:00|
2022-05-17 01:57:00|
2022-05-17 07:30:00|keep
2022-05-17 08:43:00|
2022-05-18 15:06:00|
2022-05-18 20:50:00|
2022-05-20 03:48:00|
2022-05-20 05:36:00|
2022-05-21 11:55:00|
2022-05-21 15:39:00|
2022-05-22 03:12:00|
2022-05-22 20:10:00|
2022-05-23 01:32:00|
2022-05-23 09:06:00|
2022-05-24 15:55:00|
2022-05-25 22:16:00|
2022-05-26 05:55:00|
2022-05-26 13:46:00|keep,env=prod
2022-05-26 21:38:00|
2022-05-27 18:25:00|
2022-05-28 01:37:00|
2022-05-29 08:08:00|
2022-05-30 00:54:00|
2022-05-30 01:55:00|
2022-05-30 10:05:00|env=prod
2022-05-30 10:40:00|
2022-05-30 13:25:00|
2022-05-31 00:37:00|
2022-05-31 11:20:00|
2022-05-31 12:00:00|
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
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
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
while IFS='|' read -r time tags; do
    [ -n "$time" ] || continue
    tag_args=()
    [ -z "$tags" ] || tag_args=(--tag "$tags")
    "$restic" backup --quiet --time "$time" --host h "${tag_args[@]}" "$work/src" >/dev/null
    snapshots_json="$(jq -c --arg time "${time/ /T}Z" --arg tags "$tags" \
        '. + [{time: $time, tags: ($tags | split(",") | map(select(. != "")))}]' \
        <<<"$snapshots_json")"
    count=$((count + 1))
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
