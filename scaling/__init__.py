"""Unit 3 -- scaling: FLOPs accounting, IsoFLOPs and parametric (Chinchilla) scaling-law fits, and
a budgeted experiment lab that trains real models."""
