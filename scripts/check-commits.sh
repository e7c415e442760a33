#!/usr/bin/env bash
# check-commits.sh [--lint-only] RANGE...
#
# Runs `make lint` (go vet, gofmt, staticcheck) and, unless --lint-only,
# `make test` on every commit of each RANGE (e.g. main~20..main, or
# M1^1..M1^2 M2^1..M2^2 for the branches merged by M1 and M2), oldest first,
# each in a throw-away detached worktree, so a commit that only a later one
# made green shows up. Prints one line per commit and exits non-zero when
# any commit failed. The log of each failing step is kept under
# $CHECK_COMMITS_LOGS (default /tmp/check-commits).
set -u -o pipefail

lint_only=0
if [ "${1:-}" = "--lint-only" ]; then lint_only=1; shift; fi
[ $# -gt 0 ] || { echo "usage: scripts/check-commits.sh [--lint-only] RANGE..." >&2; exit 2; }

top=$(git rev-parse --show-toplevel) || exit 2
logs=${CHECK_COMMITS_LOGS:-/tmp/check-commits}
mkdir -p "$logs"
wt=$(mktemp -d /tmp/check-commits-wt.XXXXXX)
trap 'git -C "$top" worktree remove --force "$wt" >/dev/null 2>&1; rm -rf "$wt"' EXIT
git -C "$top" worktree add -q --detach "$wt" HEAD || exit 2
# staticcheck is installed once into .tools by make lint; reuse it.
[ -d "$top/.tools" ] && ln -s "$top/.tools" "$wt/.tools"

failed=0
total=0
for c in $(for r in "$@"; do git -C "$top" rev-list --reverse "$r"; done | awk '!seen[$0]++'); do
	total=$((total + 1))
	git -C "$wt" checkout -q --detach "$c" || exit 2
	subject=$(git -C "$top" log -1 --format=%s "$c" | cut -c1-70)
	status=ok
	if ! make -C "$wt" --no-print-directory lint >"$logs/$c.lint.log" 2>&1; then
		status="LINT FAILED ($logs/$c.lint.log)"
	elif [ $lint_only = 0 ] && ! make -C "$wt" --no-print-directory test >"$logs/$c.test.log" 2>&1; then
		status="TEST FAILED ($logs/$c.test.log)"
	fi
	[ "$status" = ok ] || failed=$((failed + 1))
	printf '%s %s  %s\n' "${c:0:7}" "$status" "$subject"
done
echo "$total commits checked, $failed failed"
[ $failed = 0 ]
