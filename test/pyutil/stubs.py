"""Python gRPC stubs compiled from a .proto at run time, as a user builds a client.

The Python clients of the tests (test/e2e/python_client.py, test/oip/oip_grpc_client.py)
import their stubs from here: protoc with Debian's grpc_python_plugin compiles the
proto, unmodified, into a temporary directory (removed at exit), and the generated
modules are imported from it.
"""
import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile


def load_stubs(proto, prefix="stubs-"):
    """Compile proto with protoc and the gRPC Python plugin; return (pb2, pb2_grpc).

    Exits naming the Debian package when protoc or the plugin is missing, and with
    protoc's error when the proto does not compile.
    """
    protoc = shutil.which("protoc")
    if protoc is None:
        sys.exit("protoc not found (Debian package protobuf-compiler)")
    plugin = shutil.which("grpc_python_plugin")
    if plugin is None:
        sys.exit("grpc_python_plugin not found (Debian package protobuf-compiler-grpc)")
    out = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, out, True)
    done = subprocess.run(
        [protoc, "-I", os.path.dirname(os.path.abspath(proto)), "--python_out=" + out,
         "--grpc_python_out=" + out, "--plugin=protoc-gen-grpc_python=" + plugin, proto],
        stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit("protoc could not compile %s: %s" % (proto, done.stderr.strip()))
    sys.path.insert(0, out)
    base = os.path.splitext(os.path.basename(proto))[0]
    return importlib.import_module(base + "_pb2"), importlib.import_module(base + "_pb2_grpc")
