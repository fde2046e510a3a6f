import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as p from 'path';
import { projectRoot } from '../src/root';

function fs(files: string[]): (path: string) => boolean {
  const set = new Set(files.map((f) => p.resolve(f)));
  return (path) => set.has(p.resolve(path));
}

test('a Tonel package folder opened alone is rooted at the repository (.project)', () => {
  const exists = fs(['/r/.project', '/r/src/.properties', '/r/src/Pkg-Core/package.st']);
  assert.equal(projectRoot('/r/src/Pkg-Core', exists), p.resolve('/r'));
});

test('src/.properties marks the root without .git or .project', () => {
  const exists = fs(['/r/src/.properties', '/r/src/Pkg-Core/package.st']);
  assert.equal(projectRoot('/r/src/Pkg-Core', exists), p.resolve('/r'));
  assert.equal(projectRoot('/r/src', exists), p.resolve('/r'));
});

test('without markers, the folder above the package', () => {
  const exists = fs(['/r/src/Pkg-Core/package.st']);
  assert.equal(projectRoot('/r/src/Pkg-Core', exists), p.resolve('/r/src'));
  assert.equal(projectRoot('/r/x/Pkg.package', fs([])), p.resolve('/r/x'));
});

test('a folder with a marker, or any other folder, is taken as opened', () => {
  assert.equal(projectRoot('/r', fs(['/r/.project'])), p.resolve('/r'));
  assert.equal(projectRoot('/home/u/work', fs(['/home/u/.git'])), p.resolve('/home/u/work'));
});
