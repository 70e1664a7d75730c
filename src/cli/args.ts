/**
 * The CLI's command-line parser: docker-style commands, flags and help, with the fluent API of the
 * commander package (command/option/argument/action). abode's own, because the CLI's start-up time is
 * measured: loading commander cost about a fifth of a short `abode run`.
 */

/** A usage error, after its message went to stderr; exitCode 0 for --help and --version. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string,
  ) {
    super(message);
  }
}

type Parser = (value: string, previous: unknown) => unknown;
// Actions receive the parsed arguments and flags, typed by each command.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Action = (...args: any[]) => unknown;

interface OptionSpec {
  short?: string;
  long: string;
  /** The key in opts(): camelCase of the long name, without "no-". */
  key: string;
  value: 'none' | 'required' | 'optional';
  valueName: string;
  negate: boolean;
  description: string;
  parser?: Parser;
  default?: unknown;
}

interface ArgumentSpec {
  name: string;
  required: boolean;
  variadic: boolean;
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export class Command {
  private readonly subcommands: Command[] = [];
  private readonly options: OptionSpec[] = [];
  private readonly args: ArgumentSpec[] = [];
  private readonly aliases: string[] = [];
  private readonly helpAfter: string[] = [];
  private readonly preActions: ((self: Command, action: Command) => void)[] = [];
  private values: Record<string, unknown> = {};
  private about = '';
  private usageText?: string;
  private versionText?: string;
  private helpHint?: string;
  private passThrough = false;
  private handler?: Action;
  private parent?: Command;

  constructor(private readonly commandName = '') {}

  command(name: string): Command {
    const child = new Command(name);
    child.parent = this;
    this.subcommands.push(child);
    return child;
  }

  name(): string {
    return this.commandName;
  }

  description(text: string): this {
    this.about = text;
    return this;
  }

  usage(text: string): this {
    this.usageText = text;
    return this;
  }

  alias(name: string): this {
    this.aliases.push(name);
    return this;
  }

  argument(spec: string, _description?: string): this {
    const variadic = spec.includes('...');
    this.args.push({ name: spec.replace(/[<>[\].]/g, ''), required: spec.startsWith('<'), variadic });
    return this;
  }

  /** flags like "-e, --env <KEY=VALUE>", "--no-trunc" or "--tls-verify [bool]"; a parser, then a default. */
  option(flags: string, description: string, parserOrDefault?: unknown, defaultValue?: unknown): this {
    const short = /(?:^|[ ,])-([A-Za-z])\b/.exec(flags)?.[1];
    const long = /--([a-zA-Z0-9-]+)/.exec(flags)?.[1] ?? '';
    const negate = long.startsWith('no-');
    const spec: OptionSpec = {
      ...(short ? { short } : {}),
      long,
      key: camel(negate ? long.slice(3) : long),
      value: flags.includes('<') ? 'required' : flags.includes('[') ? 'optional' : 'none',
      valueName: /<[^>]+>|\[[^\]]+\]/.exec(flags)?.[0] ?? '',
      negate,
      description,
    };
    if (typeof parserOrDefault === 'function') {
      spec.parser = parserOrDefault as Parser;
      if (defaultValue !== undefined) spec.default = defaultValue;
    } else if (parserOrDefault !== undefined) spec.default = parserOrDefault;
    this.options.push(spec);
    return this;
  }

  passThroughOptions(): this {
    this.passThrough = true;
    return this;
  }

  /** Options of a command are parsed only after its name (always so here). */
  enablePositionalOptions(): this {
    return this;
  }

  exitOverride(): this {
    return this;
  }

  showHelpAfterError(hint: string): this {
    this.helpHint = hint;
    return this;
  }

  version(text: string, _flags?: string): this {
    this.versionText = text;
    return this;
  }

  addHelpText(_position: 'after', text: string): this {
    this.helpAfter.push(text);
    return this;
  }

  hook(_event: 'preAction', fn: (self: Command, action: Command) => void): this {
    this.preActions.push(fn);
    return this;
  }

  action(fn: Action): this {
    this.handler = fn;
    return this;
  }

  opts(): Record<string, unknown> {
    return this.values;
  }

  /** Parses process-style argv (node, script, ...args) and runs the chosen command's action. */
  parse(argv: string[]): void {
    this.dispatch(argv.slice(2), this);
  }

  private root(): Command {
    return this.parent ? this.parent.root() : this;
  }

  private path(): string {
    return this.parent ? `${this.parent.path()} ${this.commandName}` : this.commandName;
  }

  private fail(message: string, code: string): never {
    process.stderr.write(`error: ${message}\n`);
    const hint = this.root().helpHint;
    if (hint) process.stderr.write(`${hint}\n`);
    throw new CommandError(message, 1, code);
  }

  private dispatch(words: string[], root: Command): void {
    this.values = {};
    for (const option of this.options) {
      if (option.default !== undefined) this.values[option.key] = option.default;
      else if (option.negate) this.values[option.key] = true;
    }
    const positional: string[] = [];
    let i = 0;
    for (; i < words.length; i++) {
      const word = words[i];
      if (word === '--') {
        positional.push(...words.slice(i + 1));
        break;
      }
      // A command with subcommands stops at the first word; passThrough stops at the first argument.
      if (!word.startsWith('-') || word === '-') {
        if (this.subcommands.length > 0 && positional.length === 0) break;
        positional.push(word);
        if (this.passThrough) {
          positional.push(...words.slice(i + 1));
          break;
        }
        continue;
      }
      if (word === '-h' || word === '--help') {
        process.stdout.write(this.helpText());
        throw new CommandError('help', 0, 'help');
      }
      if (word === '--version' && this.versionText !== undefined) {
        process.stdout.write(`${this.versionText}\n`);
        throw new CommandError('version', 0, 'version');
      }
      i = this.readOption(words, i);
    }
    if (this.subcommands.length > 0) {
      const name = words[i];
      if (name === undefined) {
        if (this === root || !this.handler) {
          process.stdout.write(this.helpText());
          throw new CommandError('help', this === root ? 1 : 0, 'help');
        }
      } else {
        const child = this.subcommands.find((c) => c.commandName === name || c.aliases.includes(name));
        if (!child) this.fail(`unknown command '${name}'`, 'unknownCommand');
        return child.dispatch(words.slice(i + 1), root);
      }
    }
    const values: unknown[] = [];
    let next = 0;
    for (const arg of this.args) {
      if (arg.variadic) {
        values.push(positional.slice(next));
        if (arg.required && positional.length <= next)
          this.fail(`missing required argument '${arg.name}'`, 'missingArgument');
        next = positional.length;
      } else {
        if (arg.required && positional[next] === undefined) {
          this.fail(`missing required argument '${arg.name}'`, 'missingArgument');
        }
        values.push(positional[next++]);
      }
    }
    if (next < positional.length) {
      this.fail(
        `too many arguments for '${this.commandName}': expected ${this.args.length}`,
        'excessArguments',
      );
    }
    for (const hook of root.preActions) hook(root, this);
    this.handler?.(...values, this.values, this);
  }

  /** Reads the option at words[i] (and its value); returns the index of the last word it used. */
  private readOption(words: string[], i: number): number {
    const word = words[i];
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      const name = eq < 0 ? word.slice(2) : word.slice(2, eq);
      const inline = eq < 0 ? undefined : word.slice(eq + 1);
      const option = this.options.find((o) => o.long === name);
      if (!option) this.fail(`unknown option '${word}'`, 'unknownOption');
      if (option.value === 'none') {
        if (inline !== undefined) this.fail(`option '--${name}' takes no value`, 'unexpectedValue');
        this.values[option.key] = !option.negate;
        return i;
      }
      if (inline !== undefined) return (this.setValue(option, inline), i);
      if (option.value === 'optional') {
        this.values[option.key] = true;
        return i;
      }
      if (i + 1 >= words.length)
        this.fail(`option '${word} ${option.valueName}' argument missing`, 'optionMissingArgument');
      this.setValue(option, words[i + 1]);
      return i + 1;
    }
    // Short flags, combined (-it) or with an attached value (-eA=1).
    for (let j = 1; j < word.length; j++) {
      const option = this.options.find((o) => o.short === word[j]);
      if (!option) this.fail(`unknown option '-${word[j]}'`, 'unknownOption');
      if (option.value === 'none') {
        this.values[option.key] = !option.negate;
        continue;
      }
      if (j + 1 < word.length) {
        this.setValue(option, word.slice(j + 1));
        return i;
      }
      if (option.value === 'optional') {
        this.values[option.key] = true;
        return i;
      }
      if (i + 1 >= words.length)
        this.fail(`option '-${option.short} ${option.valueName}' argument missing`, 'optionMissingArgument');
      this.setValue(option, words[i + 1]);
      return i + 1;
    }
    return i;
  }

  private setValue(option: OptionSpec, value: string): void {
    const previous = this.values[option.key] === option.default ? undefined : this.values[option.key];
    this.values[option.key] = option.parser ? option.parser(value, previous) : value;
  }

  private argumentsUsage(): string {
    return this.args
      .map((a) =>
        a.required ? `<${a.name}${a.variadic ? '...' : ''}>` : `[${a.name}${a.variadic ? '...' : ''}]`,
      )
      .join(' ');
  }

  /** commander-style help: usage, description, options, commands, then the examples. */
  helpText(): string {
    const usage =
      this.usageText ??
      [
        this.options.length > 0 ? '[options]' : '',
        this.subcommands.length > 0 ? '[command]' : '',
        this.argumentsUsage(),
      ]
        .filter(Boolean)
        .join(' ');
    const lines = [`Usage: ${this.path()} ${usage}`.trimEnd(), ''];
    if (this.about) lines.push(this.about, '');
    const optionRows: [string, string][] = this.options.map((o) => [
      `${o.short ? `-${o.short}, ` : ''}--${o.long}${o.valueName ? ` ${o.valueName}` : ''}`,
      o.description +
        (o.default !== undefined && o.value !== 'none' ? ` (default: ${JSON.stringify(o.default)})` : ''),
    ]);
    if (this.versionText !== undefined) optionRows.unshift(['--version', 'output the version number']);
    optionRows.push(['-h, --help', 'display help for command']);
    const commandRows: [string, string][] = this.subcommands.map((c) => [
      `${c.commandName}${c.aliases.length ? `|${c.aliases[0]}` : ''}${c.options.length ? ' [options]' : ''}${c.args.length ? ` ${c.argumentsUsage()}` : ''}`,
      c.about,
    ]);
    const width = Math.max(...[...optionRows, ...commandRows].map(([left]) => left.length));
    const table = (rows: [string, string][]) =>
      rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`);
    lines.push('Options:', ...table(optionRows));
    if (commandRows.length > 0) lines.push('', 'Commands:', ...table(commandRows));
    return `${lines.join('\n')}\n${this.helpAfter.map((text) => `${text}\n`).join('')}`;
  }
}
