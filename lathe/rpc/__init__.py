"""Drive lathe's browser runtimes (web/: WebGL2 and WebGPU) in a browser tab from Python.

    session = lathe.rpc.browser()          # headless Chromium, or print the URL for your own browser
    mod = lathe.compile(model, target="webgl").attach(session)    # or target="webgpu"
    mod(x); mod.benchmark({"input": x}, repeat=100)

The server (websockets) binds 127.0.0.1 unless told otherwise, serves the runtime page, and accepts a
socket only with the random token in the page's URL. Frames are JSON text or raw binary (float32
arrays, the params blob); nothing received is unpickled or evaluated, and frames are capped in size.
"""

from lathe.rpc.server import RPCError, Session, browser, default_session

__all__ = ["RPCError", "Session", "browser", "default_session"]
