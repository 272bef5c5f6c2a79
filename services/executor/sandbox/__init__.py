"""Code that runs *inside* the sandbox, under the system interpreter (``/usr/bin/python3``).

Stdlib only, and no imports from ``services`` or ``shared``: the slot host copies this folder into a
root-owned runtime directory and binds it read-only into the sandbox, where these files are
imported as top-level modules. The host side imports :mod:`framing` and :mod:`verdict` from here
too, so the wire format and the result assembly have one definition.
"""
