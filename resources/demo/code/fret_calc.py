#!/usr/bin/env python3
"""fret_calc.py - fret positions for a fretted instrument (equal temperament).

Written in February 2023 for octave mandolin No. 1 at Aurelio's class.
Always measure every fret from the nut, never fret to fret ("you will add
up all your small mistakes into one big one" - Aurelio).

The cello has no frets, but --check-string is handy for its 690 mm string.
"""

import argparse

# Octave mandolin No. 1. Do not change these without changing the template!
DEFAULT_SCALE_MM = 556.0
DEFAULT_FRETS = 20

# Aurelio's rule of thumb: move the saddle back ~1.5 mm for the wound
# courses on a scale this length (fretted strings stretch and go sharp).
SADDLE_COMPENSATION_MM = 1.5

SEMITONE = 2 ** (1 / 12)


def fret_positions(scale_mm, frets):
    """Distance from the nut to each fret, in mm."""
    return [scale_mm - scale_mm / (SEMITONE ** n) for n in range(1, frets + 1)]


def print_table(scale_mm, frets):
    print(f"Scale length: {scale_mm:.1f} mm, {frets} frets")
    print(f"Saddle (wound courses): {scale_mm + SADDLE_COMPENSATION_MM:.1f} mm from nut")
    print()
    print(" fret   from nut   from previous")
    previous = 0.0
    for n, pos in enumerate(fret_positions(scale_mm, frets), start=1):
        print(f"  {n:>3}   {pos:8.2f}   {pos - previous:8.2f}")
        previous = pos


def check_string(length_mm):
    """Where the octave and fifth fall on an unfretted string (cello)."""
    print(f"String length {length_mm:.1f} mm")
    print(f"  octave harmonic at {length_mm / 2:.1f} mm")
    print(f"  fifth (2/3 of string vibrating) stop at {length_mm / 3:.1f} mm from the nut")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE_MM, help="scale length in mm")
    parser.add_argument("--frets", type=int, default=DEFAULT_FRETS, help="number of frets")
    parser.add_argument("--check-string", type=float, metavar="MM", help="unfretted string length to check")
    args = parser.parse_args()
    if args.check_string:
        check_string(args.check_string)
    else:
        print_table(args.scale, args.frets)


if __name__ == "__main__":
    main()
