"""Layer tars: the tar format, writing layers, unpacking them. Import the module you need:

- `entry`:    one entry's `Header`, the entry types, tar names confined to the root (`split_name`)
- `whiteout`: whiteouts in a layer (`.wh.` names) and in an overlay snapshot (device nodes, xattrs)
- `encode`:   headers to tar bytes (`encode_header`) and the buffered `TarWriter`
- `decode`:   tar bytes to entries (`iter_tar`: ustar, PAX, GNU long names, GNU sparse members)
- `gnusparse`: GNU sparse members (old GNU 'S', PAX 0.0/0.1/1.0) read as the plain files they stand for
- `write`:    deterministic layer tars, of a directory or overlay upperdir (`write_dir`) or of another
              tar (`rewrite_tar`)
- `unpack`:   extraction confined to a directory, as a snapshot or flat (`extract`), with the writer
              threads of `filepool`
"""
