#!/usr/bin/env bash
# Re-fetches every pinned package listed in vendor/packages.txt from the npm
# registry (`npm pack`) and copies its listed files into vendor/<dir>/.
# To move to a new version: change the version in packages.txt, run this,
# then update vendor/README.md.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -vE '^\s*(#|$)' packages.txt | while read -r dir package version files; do
    mkdir -p "$work/$dir" "$dir"
    (cd "$work/$dir" && npm pack --silent "$package@$version" >/dev/null && tar xzf ./*.tgz)
    for file in $files; do
        cp "$work/$dir/package/$file" "$dir/$(basename "$file")"
        echo "$dir/$(basename "$file") <- $package@$version/$file"
    done
done
