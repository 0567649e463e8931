"""REMIx: one 3-D U-Net per voxel-volume bin, picked from the input's spacing (paper 003)."""
