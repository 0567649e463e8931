"""REMIx: one 3-D U-Net per voxel-volume bin, picked from the input's spacing (Morell-Ortega et al., MIDL 2024)."""
