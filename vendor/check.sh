#!/usr/bin/env bash
# Verifies that every vendored file is byte-identical to the file of the
# pinned version published on the npm registry (see vendor/packages.txt).
# Exits non-zero on any difference or when a package cannot be fetched.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
while read -r dir package version files; do
    mkdir -p "$work/$dir"
    (cd "$work/$dir" && npm pack --silent "$package@$version" >/dev/null && tar xzf ./*.tgz)
    for file in $files; do
        local_copy="$dir/$(basename "$file")"
        if cmp -s "$work/$dir/package/$file" "$local_copy"; then
            echo "ok   $local_copy = $package@$version/$file"
        else
            echo "FAIL $local_copy differs from $package@$version/$file (run vendor/refresh.sh)"
            failed=1
        fi
    done
done < <(grep -vE '^\s*(#|$)' packages.txt)
exit "$failed"
