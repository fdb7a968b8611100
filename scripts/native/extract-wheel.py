#!/usr/bin/env python3
"""Takes what the tfjs-node addon needs out of a TensorFlow wheel.

Usage: extract-wheel.py <tensorflow wheel> <package dir>

Writes <package dir>/deps/lib/ (libtensorflow_cc.so.2, libtensorflow_framework.so.2
and the libtensorflow.so / libtensorflow_framework.so names the addon links against)
and <package dir>/deps/include/: the headers the addon's sources (<package dir>/binding/)
include and every header those include, found by following #include lines inside the
wheel, so the 260 MB of C++ headers the wheel carries are not unpacked.
"""
import os
import re
import shutil
import sys
import zipfile

LIBS = ('libtensorflow_cc.so.2', 'libtensorflow_framework.so.2')
LINKS = {'libtensorflow.so': 'libtensorflow_cc.so.2', 'libtensorflow_framework.so': 'libtensorflow_framework.so.2'}
ROOTS = ('tensorflow/c/c_api.h', 'tensorflow/c/eager/c_api.h')
PREFIX = 'tensorflow/include/'
INCLUDE = re.compile(rb'^\s*#\s*include\s+"([^"]+)"', re.M)


def main(wheel: str, dest: str) -> None:
    lib_dir = os.path.join(dest, 'deps', 'lib')
    inc_dir = os.path.join(dest, 'deps', 'include')
    os.makedirs(lib_dir, exist_ok=True)
    os.makedirs(inc_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for lib in LIBS:
            member = 'tensorflow/' + lib
            if member not in names:
                sys.exit(f'extract-wheel: {wheel} has no {member}; use a tensorflow(-cpu) wheel of 2.10 or later')
            with z.open(member) as src, open(os.path.join(lib_dir, lib), 'wb') as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(os.path.join(lib_dir, lib), 0o755)
        for link, target in LINKS.items():
            path = os.path.join(lib_dir, link)
            if os.path.lexists(path):
                os.remove(path)
            os.symlink(target, path)
        todo = list(ROOTS)
        binding = os.path.join(dest, 'binding')
        for source in sorted(os.listdir(binding)) if os.path.isdir(binding) else []:
            with open(os.path.join(binding, source), 'rb') as f:
                todo.extend(m.decode() for m in INCLUDE.findall(f.read()))
        seen = set()
        while todo:
            header = todo.pop()
            if header in seen:
                continue
            seen.add(header)
            member = PREFIX + header
            if member not in names:
                continue  # a system or optional header the C API does not need here
            data = z.read(member)
            path = os.path.join(inc_dir, header)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as out:
                out.write(data)
            todo.extend(m.decode() for m in INCLUDE.findall(data))
        missing = [r for r in ROOTS if PREFIX + r not in names]
        if missing:
            sys.exit(f'extract-wheel: {wheel} has no {", ".join(missing)}')
    print(f'extract-wheel: {len(LIBS)} libraries, {len(seen)} headers from {os.path.basename(wheel)}')


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
