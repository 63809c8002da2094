# The README's two set-up commands.
.PHONY: demo test test-deploy

# Install the deploy extras and run the main job on the bundled default model.
demo:
	python3 -m pip install -q -e '.[plot]'
	glfer-edge run --demo --plot demo.png --force

# Install CPU torch (local wheel, no CUDA download) + dev extras, then run the whole suite.
test:
	python3 -m pip install -q torch==2.13.0
	python3 -m pip install -q -e '.[dev]'
	python3 -m pytest -q -p no:cacheprovider

# A deploy install (no torch, no onnx): the tests of the deploy path run, the build-time ones skip.
# .ci/run runs it under Python 3.10, JetPack 6's.
test-deploy:
	python3 -m pip install -q -e . pytest
	python3 -m pytest -q -p no:cacheprovider
