// The VS Code client of the `.adm` language server. Highlighting comes from the TextMate grammar
// (syntaxes/adm.tmLanguage.json) and needs no server; everything else (diagnostics, hover,
// formatting, …) comes from `admc lsp`, which speaks standard LSP over stdio.

import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import { Executable, LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from "vscode-languageclient/node";

let client: LanguageClient | undefined;
let watcher: vscode.FileSystemWatcher | undefined;
let output: vscode.OutputChannel | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("ADM Language Server");
  context.subscriptions.push(output);

  context.subscriptions.push(
    vscode.commands.registerCommand("adm.server.restart", () => restart()),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("adm.server")) {
        void restart();
      }
    }),
  );

  await start();
}

export async function deactivate(): Promise<void> {
  await stop();
}

/** The server command from the settings. A bare name (`admc`) is looked up on the PATH; a relative
 *  path with a separator (`target/debug/admc`) is taken from the first workspace folder. */
function serverCommand(): { command: string; args: string[] } {
  const config = vscode.workspace.getConfiguration("adm.server");
  let command = config.get<string>("path", "admc").trim() || "admc";
  const extraArgs = config.get<string[]>("extraArgs", []).filter((a) => typeof a === "string");
  if (command === "~" || command.startsWith("~/")) {
    command = path.join(os.homedir(), command.slice(1));
  }
  const folder = vscode.workspace.workspaceFolders?.[0];
  if (!path.isAbsolute(command) && /[\\/]/.test(command) && folder) {
    command = path.join(folder.uri.fsPath, command);
  }
  return { command, args: ["lsp", ...extraArgs] };
}

async function start(): Promise<void> {
  const { command, args } = serverCommand();
  const executable: Executable = {
    command,
    args,
    transport: TransportKind.stdio,
    options: { cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath },
  };
  const serverOptions: ServerOptions = { run: executable, debug: executable };
  // Tells the server when a file of the program changes on disk, open in an editor or not.
  watcher = vscode.workspace.createFileSystemWatcher("**/*.adm");
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { scheme: "file", language: "adm" },
      { scheme: "untitled", language: "adm" },
    ],
    synchronize: { fileEvents: watcher },
    outputChannel: output,
  };

  client = new LanguageClient("adm", "ADM Language Server", serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    await stop();
    const message = err instanceof Error ? err.message : String(err);
    const shown = [command, ...args].join(" ");
    output?.appendLine(`cannot start \`${shown}\`: ${message}`);
    const choice = await vscode.window.showErrorMessage(
      `ADM: cannot start the language server \`${shown}\` (${message}). ` +
        "Install admc (`cargo install --path compiler/cli`) or set `adm.server.path`.",
      "Open Settings",
    );
    if (choice === "Open Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "adm.server");
    }
  }
}

async function stop(): Promise<void> {
  const old = client;
  client = undefined;
  watcher?.dispose();
  watcher = undefined;
  if (old?.isRunning()) {
    try {
      await old.stop();
    } catch (err) {
      output?.appendLine(`stopping the language server: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

async function restart(): Promise<void> {
  await stop();
  await start();
}
