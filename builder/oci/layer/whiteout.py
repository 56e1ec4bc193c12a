"""Whiteouts, in their two forms, and the xattrs a layer never carries.

In a layer tar (OCI): an empty file `.wh.NAME` deletes NAME from the layers below, and
`.wh..wh..opq` in a directory hides all of that directory's lower content; other `.wh..wh.`
names are aufs metadata, ignored. In an overlay upperdir (a snapshot): a 0/0 character device
(or, for unprivileged overlays, an empty file with an `overlay.whiteout` xattr) is a whiteout,
and an `overlay.opaque=y` xattr makes a directory opaque.
"""

from __future__ import annotations

__all__ = ["WH_PREFIX", "WH_META_PREFIX", "WH_OPAQUE", "OPAQUE_XATTR", "USER_OPAQUE_XATTR", "OPAQUE_XATTRS", "WHITEOUT_XATTRS",
           "UNSUPPORTED_XATTRS", "OVERLAY_XATTR_PREFIXES", "UNSTORED_XATTR_PREFIXES"]

WH_PREFIX = ".wh."  # `.wh.NAME`: NAME is deleted
WH_META_PREFIX = WH_PREFIX + WH_PREFIX  # `.wh..wh.*`: whiteout metadata (aufs), not a deletion
WH_OPAQUE = WH_META_PREFIX + ".opq"  # the directory it is in is opaque

OPAQUE_XATTR = "trusted.overlay.opaque"  # what unpacking into a snapshot sets (as root)
USER_OPAQUE_XATTR = "user.overlay.opaque"  # what it sets in a user namespace (rootless; overlay's `userxattr`)
# fuse-overlayfs (rootless fallback) marks every directory it makes opaque with its own xattr
OPAQUE_XATTRS = (OPAQUE_XATTR, USER_OPAQUE_XATTR, "user.fuseoverlayfs.opaque")
WHITEOUT_XATTRS = ("trusted.overlay.whiteout", "user.overlay.whiteout")
# overlay features whose upperdir a layer cannot express (mount with redirect_dir=off,metacopy=off)
UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy",
                      "user.overlay.redirect", "user.overlay.metacopy")
OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.")  # never set from a layer
UNSTORED_XATTR_PREFIXES = OVERLAY_XATTR_PREFIXES + ("security.selinux",)  # never written into a layer
