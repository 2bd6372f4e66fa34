"""The file-tag layer: XMP/IPTC keywords in photos and sidecars, atomic writes."""
