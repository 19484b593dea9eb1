#!/usr/bin/env python3
"""pg_test/data/images/sneaker_colour.jpg: the Fashion-MNIST sneaker of sneaker.png as a colour
product photo (a red shoe on white, 224 x 224, JPEG), which the page test and the README's
screenshot search with both models. Needs Pillow; re-running gives the same file.

    python3 scripts/make_colour_photo.py
"""
import os

import numpy as np
from PIL import Image

IMAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg_test", "data", "images")
shoe = Image.open(os.path.join(IMAGES, "sneaker.png")).convert("L").resize((224, 224), Image.Resampling.BICUBIC)
a = (np.asarray(shoe, np.float32) / 255.0)[..., None]  # how much shoe each pixel is
white, red = np.array([250, 250, 247], np.float32), np.array([196, 32, 44], np.float32)
rgb = (white * (1 - a) + red * a).clip(0, 255).astype(np.uint8)
Image.fromarray(rgb, "RGB").save(os.path.join(IMAGES, "sneaker_colour.jpg"), quality=90)
