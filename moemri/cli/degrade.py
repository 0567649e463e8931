"""`moemri degrade`: one shared degradation, chosen by the command-line flags, on a file."""
from __future__ import annotations

import numpy as np


def degrade_from_args(args, volume) -> int:
    """Degrade `volume` (read from args.input, output paths already checked) and write args.output."""
    from ..degrade import noise, resolution
    from ..io import write_volume

    if args.noise is not None:
        out, _ = noise.add_rician(volume, args.noise, seed=args.seed, varying=args.varying, bias=args.bias)
        what = f"{args.noise:g} % {'varying' if args.varying else 'stationary'} Rician noise, seed {args.seed}"
    elif args.thick_slices is not None:
        out = resolution.thick_slices(volume, args.thick_slices, axis=args.axis, gap_mm=args.gap)
        what = f"thick slices x{args.thick_slices} along {args.axis}"
    elif args.kspace is not None:
        out = resolution.kspace_truncation(volume, args.kspace)
        what = f"in-plane k-space truncation x{args.kspace}"
    elif args.blur_decimate is not None:
        out = resolution.blur_decimate(volume, args.blur_decimate)
        what = f"in-plane blur and decimation x{args.blur_decimate}"
    elif args.random_acquisition is not None:
        acquisition = resolution.random_acquisition(volume, args.random_acquisition, np.random.default_rng(args.seed))
        out = acquisition.native
        what = f"random acquisition, voxel volume bin {args.random_acquisition} mm3, seed {args.seed}"
    else:
        out = resolution.coarse_copy(volume, tuple(args.coarse), quantise_bits=args.bits)
        what = f"coarse copy at {' x '.join(f'{s:g}' for s in args.coarse)} mm" + (f", {args.bits}-bit" if args.bits else "")
    write_volume(out, args.output)
    spacing = " x ".join(f"{s:g}" for s in out.spacing)
    print(f"wrote {args.output}: {what}; {'x'.join(str(n) for n in out.size_xyz)} voxels of {spacing} mm")
    return 0
