import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAcceptLanguage } from '../../src/cs/preflight/index.js';

test('parseAcceptLanguage picks the best supported language, English by default', () => {
  const cases: [string | undefined, 'en' | 'ja'][] = [
    [undefined, 'en'],
    ['', 'en'],
    ['ja', 'ja'],
    ['JA', 'ja'],
    ['ja-JP,ja;q=0.9', 'ja'],
    ['ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7', 'ja'],
    ['en-US,en;q=0.9,ja;q=0.8', 'en'],
    ['en;q=0.5, ja;q=0.8', 'ja'],
    ['fr-FR, de;q=0.9, ja;q=0.5', 'ja'],
    ['fr, de', 'en'],
    ['*', 'en'],
    ['ja;q=0, en;q=0.1', 'en'],
    ['ja;q=0', 'en'],
    [' ja-JP ; q=1 ', 'ja'],
  ];
  for (const [header, lang] of cases) assert.equal(parseAcceptLanguage(header), lang, String(header));
});
