#!/bin/sh
# Intake benchmark: parse+validate a generated 10,000-row .xlsx against
# calamine merely reading it (time and peak RSS, each in its own process).
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -q -p kxca-provisioner --bench intake
