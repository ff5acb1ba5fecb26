"""RadiomicsLab's web GUI on trame-slicer (Slicer's libraries in a browser): ``radiomicslab web``.

- :mod:`.app`: the application (views + panels + logic), :func:`.app.serve`;
- :mod:`.layout`: the page layout; :mod:`.panels`: one module per panel;
- :mod:`.loader`: studies into the scene (samples, data folder, uploads; the Paint quirk);
- :mod:`.jobs`: long Logic calls in a worker thread with progress, cancel and errors.
"""
