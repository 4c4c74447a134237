"""`fmboost serve`: a web page to upload an image, upscale it, compare before/after and download the PNG."""
