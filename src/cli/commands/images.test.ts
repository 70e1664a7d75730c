import { test } from 'node:test';
import assert from 'node:assert/strict';
import { intermediateIds } from './images.js';

const image = (id: string, tags: string[], diffIds: string[], created: string) => ({
  id,
  repoTags: tags,
  repoDigests: [],
  created,
  size: 0,
  diffIds,
});

test('untagged build steps under a later image are intermediate; dangling images and tagged ones are not', () => {
  const images = [
    image('base', ['busybox:latest'], ['a'], '2026-01-01'),
    image('step1', [], ['a', 'b'], '2026-01-02'),
    image('step2-env', [], ['a', 'b'], '2026-01-03'),
    image('final', ['app:1'], ['a', 'b', 'c'], '2026-01-04'),
    image('dangling', [], ['x'], '2026-01-05'),
  ];
  assert.deepEqual([...intermediateIds(images)].sort(), ['step1', 'step2-env']);
});
