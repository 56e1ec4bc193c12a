"""What COPY and ADD do to files, one module per job (import the modules; this package imports nothing).

    copy        copy_files: COPY/ADD sources into a layer directory (HeredocSource, Item)
    ownership   --chown (resolve_owner, names from the image's /etc/passwd, /etc/group), --chmod (parse_chmod)
    extract     ADD of a local archive: is_archive, extract_archive (compression sniffed by oci.compress)
    writer      LayerWriter: entries in a layer directory, their parents, owners, modes and times
    regular     one regular file's bytes (copy_file_range), owner, mode, times and xattrs
    reuse       Reuse: an incremental COPY hard-links the unchanged files of its previous result
"""
