"""The Qt-free, torch-free core: labels, Case/Cell/Chromosome, loaders, the case file,
karyogram layout, ISCN strings and the generator of synthetic cells."""
