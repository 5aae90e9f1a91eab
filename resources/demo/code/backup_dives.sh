#!/usr/bin/env bash
# backup_dives.sh - copy dive photos and the dive log from the camera card
# and the laptop to the NAS, one folder per year and per transect.
#
# Why this exists: until September 2024 everything lived on one USB drive
# in my rucksack. It died on the second night of the workshop trip to Vila
# Almarém, in my room at the guesthouse - click, click, silence. The dive
# photos survived only because they were still on the camera card.
# Bought the NAS ("cormorant") in October 2024. Never again.
#
# Tom A. wants the K3 photo-quadrats in their own folder with the date in
# the file name - he does the stipe counts from them - so K3 gets renamed.
#
# Usage: ./backup_dives.sh [card mount point]   (default /media/nell/DIVECAM)

set -euo pipefail

CARD="${1:-/media/nell/DIVECAM}"
NAS_HOST="cormorant"
NAS_ROOT="/volume1/dives"
LOG_CSV="$HOME/sbms/dive-log.csv"
YEAR="$(date +%Y)"
STAMP="$(date +%Y-%m-%d)"

die() { echo "backup_dives: $*" >&2; exit 1; }

ping -c 1 -W 2 "$NAS_HOST" >/dev/null 2>&1 || die "$NAS_HOST is not answering - is it switched on?"

[ -d "$CARD/DCIM" ] || die "no DCIM folder on $CARD - is the card in?"

# Photos are sorted into transect folders by the camera's folder names:
# I name the folder on the camera before each dive (K1, K2, K3, K4, MISC).
for dir in "$CARD"/DCIM/*; do
    [ -d "$dir" ] || continue
    transect="$(basename "$dir" | tr '[:lower:]' '[:upper:]')"
    case "$transect" in
        K1|K2|K4) dest="$NAS_ROOT/$YEAR/$transect/" ;;
        K3)       dest="$NAS_ROOT/$YEAR/K3/quadrats/" ;;
        *)        dest="$NAS_ROOT/$YEAR/misc/" ;;
    esac
    echo ">> $transect -> $NAS_HOST:$dest"
    ssh "$NAS_HOST" "mkdir -p '$dest'"
    if [ "$transect" = "K3" ]; then
        # prefix each K3 file with today's date for Tom's counting sheet
        for f in "$dir"/*; do
            rsync -a --ignore-existing "$f" "$NAS_HOST:$dest${STAMP}_$(basename "$f")"
        done
    else
        rsync -a --ignore-existing "$dir"/ "$NAS_HOST:$dest"
    fi
done

# The dive log: keep a dated copy every time, they're tiny.
if [ -f "$LOG_CSV" ]; then
    ssh "$NAS_HOST" "mkdir -p '$NAS_ROOT/log'"
    rsync -a "$LOG_CSV" "$NAS_HOST:$NAS_ROOT/log/dive-log-$STAMP.csv"
fi

echo "Done. Card can be wiped once you've checked the NAS copy."
