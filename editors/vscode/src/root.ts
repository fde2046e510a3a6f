import * as p from 'path';

/** Files that mark a project root: `.git`, Pharo's `.project`, a Tonel `src/.properties`. */
export const ROOT_MARKERS = ['.git', '.project', p.join('src', '.properties')];

function isPackage(dir: string, exists: (path: string) => boolean): boolean {
  return exists(p.join(dir, 'package.st')) || /\.package$/.test(dir) || /\.package[\\/]/.test(dir);
}

/**
 * The folder the server should index for a workspace folder. A folder with a root marker is its
 * own root; a Tonel or FileTree package folder (or a Tonel `src` folder) opened on its own is
 * never the root: the nearest folder above it with a marker is, else the folder above the package.
 * Any other folder is taken as the user opened it.
 */
export function projectRoot(folder: string, exists: (path: string) => boolean): string {
  const start = p.resolve(folder);
  const hasMarker = (dir: string) => ROOT_MARKERS.some((m) => exists(p.join(dir, m)));
  if (hasMarker(start) || !(isPackage(start, exists) || exists(p.join(start, '.properties')))) {
    return start;
  }
  for (let dir = p.dirname(start); p.dirname(dir) !== dir; dir = p.dirname(dir)) {
    if (!isPackage(dir, exists) && hasMarker(dir)) {
      return dir;
    }
  }
  let dir = start;
  while (isPackage(dir, exists) && p.dirname(dir) !== dir) {
    dir = p.dirname(dir);
  }
  return dir;
}
