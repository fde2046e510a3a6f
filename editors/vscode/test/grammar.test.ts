// Tokenizes Smalltalk lines with the real TextMate engine (vscode-textmate + oniguruma, the
// libraries VS Code itself uses) and checks the scopes our grammar gives.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, test } from 'node:test';
import * as oniguruma from 'vscode-oniguruma';
import * as vsctm from 'vscode-textmate';

const GRAMMAR = path.join(__dirname, '..', '..', 'syntaxes', 'smalltalk.tmLanguage.json');
let grammar: vsctm.IGrammar;

before(async () => {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm')).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns: string[]) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s: string) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === 'source.smalltalk' ? vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR) : null,
  });
  const loaded = await registry.loadGrammar('source.smalltalk');
  assert.ok(loaded, 'grammar loads');
  grammar = loaded;
});

/** Tokenizes `source` (several lines) and returns [text, innermost scope] for non-blank tokens. */
function tokens(source: string): Array<[string, string]> {
  let state = vsctm.INITIAL;
  const out: Array<[string, string]> = [];
  for (const line of source.split('\n')) {
    const r = grammar.tokenizeLine(line, state);
    for (const t of r.tokens) {
      const text = line.slice(t.startIndex, t.endIndex);
      if (text.trim() !== '') {
        out.push([text, t.scopes[t.scopes.length - 1]]);
      }
    }
    state = r.ruleStack;
  }
  return out;
}

/** The innermost scope of the token whose text is `text` (the nth one). */
function scopeOf(source: string, text: string, nth = 0): string {
  const found = tokens(source).filter(([t]) => t === text);
  assert.ok(found.length > nth, `no token ${JSON.stringify(text)} in ${JSON.stringify(tokens(source))}`);
  return found[nth][1];
}

/** All scopes (outer to inner) of the token at `text`. */
function scopesAt(source: string, text: string): string[] {
  let state = vsctm.INITIAL;
  for (const line of source.split('\n')) {
    const r = grammar.tokenizeLine(line, state);
    const index = line.indexOf(text);
    if (index >= 0) {
      const t = r.tokens.find((tok) => tok.startIndex <= index && index < tok.endIndex)!;
      return t.scopes;
    }
    state = r.ruleStack;
  }
  throw new Error(`${text} not found`);
}

test('comments span lines; strings keep doubled quotes', () => {
  const src = `"a comment\nover two lines" x := 'it''s'.`;
  assert.equal(scopeOf(src, 'over two lines'), 'comment.block.smalltalk');
  assert.equal(scopeOf(src, "''"), 'constant.character.escape.smalltalk');
  assert.equal(scopeOf(src, 'x'), 'variable.other.smalltalk');
  assert.equal(scopeOf(src, ':='), 'keyword.operator.assignment.smalltalk');
});

test('symbols, characters, numbers, pseudo-variables', () => {
  const src = `^ self at: #foo:bar: put: $' , 16r1F + 2.5e3 - 3 + #+ , nil , thisContext , #'a b'`;
  assert.equal(scopeOf(src, '^'), 'keyword.control.return.smalltalk');
  assert.equal(scopeOf(src, 'self'), 'variable.language.smalltalk');
  assert.equal(scopeOf(src, 'thisContext'), 'variable.language.smalltalk');
  assert.equal(scopeOf(src, 'nil'), 'constant.language.smalltalk');
  assert.equal(scopeOf(src, 'at:'), 'keyword.other.message.keyword.smalltalk');
  assert.equal(scopeOf(src, '#foo:bar:'), 'constant.other.symbol.smalltalk');
  assert.equal(scopeOf(src, '#+'), 'constant.other.symbol.smalltalk');
  assert.equal(scopeOf(src, "$'"), 'constant.character.smalltalk');
  assert.equal(scopeOf(src, '16r1F'), 'constant.numeric.radix.smalltalk');
  assert.equal(scopeOf(src, '2.5e3'), 'constant.numeric.smalltalk');
  assert.equal(scopeOf(src, '3'), 'constant.numeric.smalltalk');
  assert.equal(scopeOf(src, 'a b'), 'constant.other.symbol.smalltalk');
});

test('true: as a keyword is not the constant true', () => {
  assert.equal(scopeOf('x true: 1', 'true:'), 'keyword.other.message.keyword.smalltalk');
  assert.equal(scopeOf('x := true', 'true'), 'constant.language.smalltalk');
});

test('a Tonel class definition', () => {
  const src = [
    '"An account"',
    'Class {',
    "\t#name : #Account,",
    "\t#superclass : #Object,",
    "\t#instVars : [ 'balance' ],",
    "\t#category : 'Bank'",
    '}',
  ].join('\n');
  assert.equal(scopeOf(src, 'Class'), 'storage.type.class.tonel.smalltalk');
  assert.equal(scopeOf(src, '#name'), 'variable.other.property.tonel.smalltalk');
  assert.equal(scopeOf(src, '#Account'), 'entity.name.type.class.smalltalk');
  assert.equal(scopeOf(src, '#superclass'), 'variable.other.property.tonel.smalltalk');
  assert.equal(scopeOf(src, '#Object'), 'constant.other.symbol.smalltalk');
  assert.deepEqual(scopesAt(src, "'Bank'").slice(0, 2), ['source.smalltalk', 'meta.class.tonel.smalltalk']);
});

test('one-line Tonel package and extension definitions with quoted names', () => {
  const src = "Package { #name : #'Bank-Core' }\nObject subclass: #X";
  assert.equal(scopeOf(src, "#'Bank-Core'"), 'entity.name.type.class.smalltalk');
  assert.deepEqual(scopesAt(src, 'Object'), ['source.smalltalk', 'entity.other.inherited-class.smalltalk']);
});

test('Tonel methods: Foo >> bar [ and class side, keyword selector with arguments', () => {
  const src = [
    "{ #category : 'accessing' }",
    'Account >> deposit: anAmount [',
    '\t| old |',
    '\told := balance.',
    '\tbalance := balance + anAmount.',
    '\t[ :x | x ] value: 1',
    ']',
    '',
    'Account class >> new [ ^ super new ]',
  ].join('\n');
  assert.equal(scopeOf(src, 'Account'), 'entity.name.type.class.smalltalk');
  assert.equal(scopeOf(src, '>>'), 'keyword.operator.method-separator.smalltalk');
  assert.equal(scopeOf(src, 'deposit:'), 'entity.name.function.smalltalk');
  assert.equal(scopeOf(src, 'anAmount'), 'variable.parameter.smalltalk');
  assert.equal(scopeOf(src, 'old', 0), 'variable.other.temporary.smalltalk');
  assert.equal(scopeOf(src, ':x'), 'variable.parameter.block.smalltalk');
  assert.equal(scopeOf(src, 'class'), 'storage.modifier.class-side.smalltalk');
  assert.equal(scopeOf(src, 'new', 0), 'entity.name.function.smalltalk');
  assert.equal(scopeOf(src, 'super'), 'variable.language.smalltalk');
  assert.ok(scopesAt(src, 'balance := balance +').includes('meta.method.smalltalk'));
  // After the method's closing bracket we are back at the top level.
  assert.deepEqual(scopesAt(src, "{ #category"), ['source.smalltalk', 'meta.array.brace.smalltalk']);
});

test('chunk format: class definition and methodsFor:', () => {
  const src = [
    "Object subclass: #Account",
    "\tinstanceVariableNames: 'balance'",
    "\tclassVariableNames: ''",
    "\tcategory: 'Bank'!",
    '',
    "!Account methodsFor: 'accessing' stamp: 'jd 1/1/2020'!",
    'balance',
    '\t^ balance ifNil: [0]! !',
  ].join('\n');
  assert.equal(scopeOf(src, 'Object'), 'entity.other.inherited-class.smalltalk');
  assert.equal(scopeOf(src, 'subclass:'), 'keyword.other.definition.smalltalk');
  assert.equal(scopeOf(src, '#Account'), 'entity.name.type.class.smalltalk');
  assert.equal(scopeOf(src, 'Account', 0), 'entity.name.type.class.smalltalk');
  assert.equal(scopeOf(src, 'methodsFor:'), 'keyword.other.chunk.smalltalk');
  assert.equal(scopeOf(src, 'accessing'), 'string.quoted.single.smalltalk');
  assert.equal(scopeOf(src, 'stamp:'), 'keyword.other.chunk.smalltalk');
  assert.equal(scopeOf(src, 'ifNil:'), 'keyword.other.message.keyword.smalltalk');
  assert.equal(scopeOf(src, '!', 3), 'punctuation.separator.chunk.smalltalk');
});

test('GNU Smalltalk brackets: class, methods, class side, extend', () => {
  const src = [
    'Object subclass: Account [',
    '    | balance |',
    "    <comment: 'A bank account'>",
    '    balance [ ^balance ]',
    '    deposit: anAmount [',
    '        anAmount > 0 ifTrue: [ balance := balance + anAmount ]',
    '    ]',
    '    Account class >> new [ ^super new init ]',
    ']',
    'Integer extend [',
    '    double [ ^self * 2 ]',
    ']',
  ].join('\n');
  assert.equal(scopeOf(src, 'Account', 0), 'entity.name.type.class.smalltalk');
  assert.equal(scopeOf(src, 'comment:'), 'storage.modifier.pragma.smalltalk');
  assert.equal(scopeOf(src, 'deposit:'), 'entity.name.function.smalltalk');
  assert.equal(scopeOf(src, 'ifTrue:'), 'keyword.other.message.keyword.smalltalk');
  assert.equal(scopeOf(src, 'Integer'), 'entity.name.type.class.smalltalk');
  assert.equal(scopeOf(src, 'extend'), 'keyword.other.definition.smalltalk');
  assert.equal(scopeOf(src, 'double'), 'entity.name.function.smalltalk');
  // Brackets balance: the `]` closing the class leaves the top level clean.
  assert.deepEqual(scopesAt(src, 'Integer'), ['source.smalltalk', 'meta.class.body.smalltalk', 'entity.name.type.class.smalltalk']);
});

test('every sample file (all formats) ends back at the top level', () => {
  const sample = path.join(__dirname, '..', '..', '..', '..', 'tests', 'fixtures', 'sample');
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'bad') {
        walk(full);
      } else if (entry.isFile() && entry.name.endsWith('.st')) {
        files.push(full);
      }
    }
  };
  if (!fs.existsSync(sample)) {
    return; // the extension built outside the repository
  }
  walk(sample);
  assert.ok(files.length >= 10, `found ${files.length} sample files`);
  const unbalanced: string[] = [];
  for (const file of files) {
    let state = vsctm.INITIAL;
    for (const line of fs.readFileSync(file, 'latin1').split(/\r\n|\r|\n/)) {
      state = grammar.tokenizeLine(line, state).ruleStack;
    }
    if (state.depth !== vsctm.INITIAL.depth) {
      unbalanced.push(`${path.relative(sample, file)} (depth ${state.depth})`);
    }
  }
  assert.deepEqual(unbalanced, []);
});
