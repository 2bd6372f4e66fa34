"""The pipeline: discover and decode photos, run the models, turn outputs into tags, write them."""
