<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1">
<context>
    <name>@default</name>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="347"/>
        <source>Add to the index in {0}, which holds no tiles yet.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="349"/>
        <source>Add to this index ({0}), which holds {1:,} tiles of these folders: {2}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="353"/>
        <source>{0} is new to it and is added.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="355"/>
        <source>{0} is one of them: only new or changed files are indexed.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="359"/>
        <source>The tiling chosen is not the index&apos;s: all {0:,} tiles would be tiled again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="383"/>
        <source>CACH: a very large indexing run</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="383"/>
        <source>Index anyway</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="393"/>
        <source>CACH: adapt to this archive</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="393"/>
        <source>Adapt</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dock.py" line="70"/>
        <source>CACH search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/guide.py" line="45"/>
        <source>Open the CACH user guide (bundled with the plugin, works offline)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="332"/>
        <source>unload: {name} failed: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="80"/>
        <source>Raster search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="113"/>
        <source>Index raster folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="116"/>
        <source>Cuts every raster of a folder into tiles, hashes them with the CACH model and stores them in an index folder. Re-running updates only changed files. Dry run only estimates files, tiles, bytes and time.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="123"/>
        <source>Raster folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="374"/>
        <source>Index folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="153"/>
        <source>Bands (e.g. 1,2,3; empty = automatic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="160"/>
        <source>Also tiles twice as large</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="163"/>
        <source>Rebuild the index from scratch</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="166"/>
        <source>Dry run (estimate)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="169"/>
        <source>Index even a very large run (over {CONFIRM_ABOVE_TILES:,} new tiles), or one whose tiling re-tiles every folder of an existing index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="254"/>
        <source>Text search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="257"/>
        <source>Finds the tiles of a CACH index that best match a description, e.g. &apos;a baseball field next to a parking lot&apos;. Output: footprints with rank, score, source, window, query, model and index.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="271"/>
        <source>What are you looking for</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="384"/>
        <source>Number of results</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="282"/>
        <source>Only within extent</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="311"/>
        <source>Search results</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="363"/>
        <source>Run a saved search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="366"/>
        <source>Runs a refined search kept as a file (tiles marked right or wrong, saved with &apos;cach search --save&apos;) on an index, e.g. next month&apos;s imagery. It works on an index made with the same model, also after &apos;cach adapt&apos;; another model is refused. Output: footprints with rank, score, confidence, source and window.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="381"/>
        <source>Saved search (.json)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/tasks.py" line="91"/>
        <source>{description} was cancelled.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/tasks.py" line="105"/>
        <source>CACH: indexing into {name}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/tasks.py" line="118"/>
        <source>CACH: adapting the model to {index}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="535"/>
        <source>Indexing cancelled. Files already indexed are kept; index the folder again to finish.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="546"/>
        <source>Indexing finished before the cancel took effect: every file is indexed, the index is complete and is now chosen in the search panel.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="551"/>
        <source>Indexing cancelled: what was indexed is kept and searchable; {todo} tiles of {files} files are still to do. Index the folder again to finish.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="368"/>
        <source>The tiling you chose is not this index&apos;s own. Indexing with it tiles all {0:,} tiles of the index&apos;s {1} folder(s) again: {2}. Re-tile them all, or cancel and keep the index&apos;s tiling.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="65"/>
        <source>This folder is not a CACH index. Choose an index folder made with {INDEX_MENU}, or index your rasters there first.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="69"/>
        <source>This index holds no tiles yet. Index a raster folder into it with {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="72"/>
        <source>Indexing into this folder was interrupted. Run {INDEX_MENU} on the same raster folder again to finish it; what was indexed is kept.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="76"/>
        <source>This index is damaged. Make it again with {INDEX_MENU} (tick “rebuild from scratch”).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="79"/>
        <source>This index was made by a newer version of CACH for QGIS. Update the plugin in Plugins ▸ Manage and Install Plugins.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="83"/>
        <source>Another indexing run is writing this index. Wait until it ends (task manager in the status bar), then try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="87"/>
        <source>This index is read-only (a read-only drive or folder): it can be searched but not indexed into or adapted. To change it, copy the index folder somewhere writable and choose the copy.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="92"/>
        <source>This index was made in a way that cannot do this yet. Re-index it with {INDEX_MENU} (tick “rebuild from scratch”), then try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="96"/>
        <source>This index was made with a different model. Re-index it with {INDEX_MENU} (tick “rebuild from scratch”), or choose another index.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="108"/>
        <source>A file or folder no longer exists. Check the folder you chose.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="109"/>
        <source>This file is not a raster QGIS/GDAL can read. Choose a raster or a folder.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="112"/>
        <source>A raster points at a network or outside source, which CACH never reads from inside a file. Index the source rasters themselves.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="116"/>
        <source>The raster this tile came from is gone. Re-index the folder with {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="119"/>
        <source>This tile is no longer in the index (it was re-indexed). Run the search again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="122"/>
        <source>This point lies outside what its coordinate system can express. Click inside an indexed raster.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="126"/>
        <source>The query image cannot be read. Choose a JPEG, PNG or GeoTIFF image.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="129"/>
        <source>The model file cannot be read. Check it in {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="130"/>
        <source>A file cannot be read. Check that it opens in QGIS, then try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="133"/>
        <source>Nothing in this folder could be indexed. Choose a folder that holds rasters (GeoTIFF, JPEG 2000, VRT, IMG, PNG, JPEG).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="137"/>
        <source>The object storage refused the credentials (or none were found). Check the AWS credentials QGIS was started with, then try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="141"/>
        <source>The object-storage endpoint cannot be reached. Check the network, then try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="144"/>
        <source>A part of the runtime this needs is not installed (the standard runtime has no PyTorch: training and the GPU need the &apos;GPU and training&apos; runtime; s3:// and clusters need their own parts). Create the runtime with it in {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="149"/>
        <source>The compute cluster cannot be reached. Check {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="152"/>
        <source>The coordinate system is not known to the runtime. Set the project CRS to a standard one (Project ▸ Properties ▸ CRS) and try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="156"/>
        <source>The runtime has no model for these settings. Check {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="157"/>
        <source>The runtime does not know this model. Check {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="158"/>
        <source>The runtime cannot use this device or engine. Check {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="161"/>
        <source>A setting has a value the runtime does not accept. Check {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="164"/>
        <source>Cancelled.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="165"/>
        <source>The disk is full. Free some space and run it again; nothing half-written was kept.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="168"/>
        <source>This run is very large and waits for your go-ahead.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="169"/>
        <source>The tiling chosen is not the index&apos;s own: indexing with it re-tiles every folder of the index, and waits for your go-ahead (or keep the index&apos;s tiling).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="173"/>
        <source>Something went wrong inside the CACH runtime (a bug). Details are in {LOG_PANEL}; please report them.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="180"/>
        <source>The plugin and the runtime do not understand each other (a bug). Details are in {LOG_PANEL}; please report them.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="184"/>
        <source>A file cannot be read. Check the files you chose, then try again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="185"/>
        <source>A runtime setting is not valid. Check {RUNTIME_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="186"/>
        <source>This index cannot be used now. Choose another one or re-index it with {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="198"/>
        <source>not a raster</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="199"/>
        <source>refers to a network or outside source</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="201"/>
        <source>missing</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="202"/>
        <source>its corners fall outside its projection</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="246"/>
        <source>cannot be read</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="249"/>
        <source>1 file skipped: {files}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="249"/>
        <source>{n} files skipped: {files}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="263"/>
        <source>the folder holds no raster files</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="264"/>
        <source>Nothing was indexed: {why}. Choose a folder with rasters in {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="267"/>
        <source>Index ready: {tiles} tiles to search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="270"/>
        <source>{n} files added or updated</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="270"/>
        <source>{n} removed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="270"/>
        <source>{n} unchanged</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="280"/>
        <source>; {n} files not reached yet: index the folder again to add them</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="291"/>
        <source>1 file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="291"/>
        <source>{n} files</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="292"/>
        <source>{files}, {new} new tiles ({tiles} in all), {mb} MB to read, about {time}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="309"/>
        <source>{n} s</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="311"/>
        <source>{n} min</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="312"/>
        <source>{n} h</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="317"/>
        <source>This run would index {estimate}.

It keeps running in the background (task manager in the status bar) and can be cancelled there; what is done by then is kept. Index anyway?</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="327"/>
        <source>what you asked for</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="328"/>
        <source>Weak matches: the best tiles are unlikely to show {what}. Your archive may not contain this kind of scene. Try other words, or index more imagery.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="339"/>
        <source>confidence &lt; 1 %</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="339"/>
        <source>confidence {n} %</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="356"/>
        <source>score {n}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="424"/>
        <source>window (col, row, width, height): {window}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="426"/>
        <source>tile {id}, score {score}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="428"/>
        <source>, Hamming distance {n}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="430"/>
        <source>{confidence}: the estimated chance that this tile shows what you asked for</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="436"/>
        <source>{note}. Select it to view the image.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="456"/>
        <source>{n} tiles {what}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="459"/>
        <source> in {ms} ms</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="461"/>
        <source>; {n} not georeferenced (in the list only)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="480"/>
        <source>Model: {method} hashing, {backbone} encoders, {bits}-bit codes</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="487"/>
        <source>Heads: {heads}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="492"/>
        <source>Runs on: {runs}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="494"/>
        <source>Index: {path}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="496"/>
        <source>, {n} tiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="498"/>
        <source>, adapted to its archive</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="504"/>
        <source>The index {name} was made with an earlier model. Re-index it to search with the new one (better on scene types the old model never saw).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="526"/>
        <source>Adapted the model to this archive</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="528"/>
        <source> and re-hashed its {n} tiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="530"/>
        <source> in {time}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="531"/>
        <source>. Searches of this index now use it.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="357"/>
        <source>not georeferenced</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="300"/>
        <source> (of which {setup} to load the model first)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="76"/>
        <source>CACH: {label}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="76"/>
        <source>CACH: examples</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="89"/>
        <source>similar to tile {id}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="153"/>
        <source>rank {n}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="153"/>
        <source>rank {first}–{last}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="345"/>
        <source>CACH results</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="350"/>
        <source>{title} footprints</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="131"/>
        <source>Tile size (pixels; empty = the index&apos;s own, 256 for a new index)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/processing/algorithms.py" line="142"/>
        <source>Overlap (fraction of a tile; empty = the index&apos;s own, 0 for a new index)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="364"/>
        <source>✓ right</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="364"/>
        <source>✗ wrong</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="366"/>
        <source>{mark}  {rank}{name} (tile {id})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="374"/>
        <source>Marks: none. Mark results right or wrong (buttons below the results, or right-click a result or a tile on the map), then Refine.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="378"/>
        <source>Marks: {right} right, {wrong} wrong. Refine learns from them.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="385"/>
        <source>Refined search saved to {path}. Run it on other imagery with “Run saved search…”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="100"/>
        <source>This file is not a saved CACH search, or it is damaged. Choose a file made with “Save refined search…”.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="104"/>
        <source>This saved search was made with another model, so it cannot run on this index. Choose an index made with the same model, or mark tiles on this index and save a new search.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="511"/>
        <source>Adapt the model to the imagery of {name}?

CACH fine-tunes the image side of its model on this index&apos;s own tiles (no labels needed) and re-hashes the index. What it improves: text searches (by about 0.03 mAP on two archives of scene types the model never saw) and, on large archives, which tiles an image search considers first. It does not change the order of similar-image results, which are ranked by the image features already. It runs in the background (task manager in the status bar) and can be cancelled there. Only this index changes; other indexes keep the shipped model.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dock.py" line="47"/>
        <source>for the saved search {name}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dock.py" line="54"/>
        <source>for {label}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/message_bar.py" line="44"/>
        <source>CACH</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/search_files.py" line="20"/>
        <source>Save footprints</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/search_files.py" line="20"/>
        <source>GeoPackage (*.gpkg)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/search_files.py" line="26"/>
        <source>Save refined search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/search_files.py" line="32"/>
        <source>CACH saved search (*.json)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/search_files.py" line="32"/>
        <source>Run saved search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="391"/>
        <source>Footprints saved to {path}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="394"/>
        <source>{n} rows have no geometry ({ranks}): {why} (see their &apos;note&apos; field).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="401"/>
        <source>Type what you are looking for, or mark example tiles.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="402"/>
        <source>Choose an index folder first, or make one with {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="403"/>
        <source>Searching…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="404"/>
        <source>Search cancelled.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="405"/>
        <source>Index changed: press Search to search this index.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="406"/>
        <source>Select a result first.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="407"/>
        <source>Run a search first.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="408"/>
        <source>Mark tiles right or wrong first, then save.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/layers.py" line="80"/>
        <source>, results {first}–{last}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="452"/>
        <source>Results {first}–{last} {what}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/wording.py" line="463"/>
        <source>; on imagery like this the evidence cannot tell these tiles apart: each shows what you asked for with a chance of about {n} %</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>CACH</name>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="373"/>
        <source>CACH: re-tile the whole index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="373"/>
        <source>Re-tile all</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>CachPlugin</name>
    <message>
        <location filename="../cach_qgis/plugin.py" line="69"/>
        <source>a Processing provider &apos;cach&apos; is already registered</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="89"/>
        <source>plugin loaded</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="281"/>
        <source>CACH</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="122"/>
        <source>Clear CACH results</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="125"/>
        <source>CACH user guide</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="156"/>
        <source>plugin unloaded</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="233"/>
        <source>Removed the CACH results from the layer tree ({n} layers).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="259"/>
        <source>Choose an index in the CACH search panel first; adapting works on that index.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/plugin.py" line="282"/>
        <source>Re-index with the new model</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>IndexDialog</name>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="59"/>
        <source>CACH: Index raster folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="68"/>
        <source>add to an existing index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="88"/>
        <source> px</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="91"/>
        <source>off (use pixels)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="92"/>
        <source> m</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="97"/>
        <source>also tiles twice as large (scales 1, 2)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="98"/>
        <source>rebuild from scratch (e.g. after a model update)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="100"/>
        <source>automatic (RGB), or e.g. 1,2,3 or 4,3,2</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="77"/>
        <source>Estimate (dry run)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="104"/>
        <source>Raster folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="105"/>
        <source>Index folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="108"/>
        <source>Tile size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="109"/>
        <source>Tile ground size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="110"/>
        <source>Overlap (fraction)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="113"/>
        <source>Bands</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="120"/>
        <source>Index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>The folder of rasters to index, searched with its subfolders: GeoTIFF, JPEG 2000, VRT, IMG, PNG and JPEG files</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>The folder the index is written to</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Add the raster folder to an index that exists already, instead of a new index beside the folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Tile side in pixels. A photo smaller than a tile becomes one tile</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Tile side in metres on the ground instead of pixels (rasters with a CRS only)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>The fraction of a tile shared with its neighbour: more overlap finds objects cut by tile edges, at the cost of more tiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Also index tiles twice as large, for scenes bigger than one tile</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Delete what the index holds and index everything again (after a model update)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Which bands make the picture: empty = automatic (RGB, alpha ignored), or three band numbers such as 4,3,2, or one band</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="131"/>
        <source>Count files, new tiles, data to read and the expected time, without indexing</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="219"/>
        <source>A new index in {0}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="222"/>
        <source>Add to the existing index in {0}: choose the raster folder.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="226"/>
        <source>Reading what the index in {0} holds…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="229"/>
        <source>Cannot read the index in {0}: {1}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="283"/>
        <source>Estimating…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="289"/>
        <source>Cannot estimate: {error_text}</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>IndexJobs</name>
    <message>
        <location filename="../cach_qgis/index_jobs.py" line="60"/>
        <source>Adapting</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/index_jobs.py" line="63"/>
        <source>Adapting the model to this archive; progress and Cancel are in the task manager (status bar).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/index_jobs.py" line="115"/>
        <source>Indexing</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/index_jobs.py" line="147"/>
        <source>{what} cancelled; nothing was changed.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/index_jobs.py" line="153"/>
        <source>{what} failed. {error_text}</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>MarksBox</name>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="39"/>
        <source>Tiles you marked right (more like this) or wrong (less like this)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="42"/>
        <source>Refine</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="42"/>
        <source>Search again, learning from the tiles marked right and wrong</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="46"/>
        <source>Undo mark</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="46"/>
        <source>Forget the selected mark (none selected: the latest)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="49"/>
        <source>Clear marks</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="49"/>
        <source>Forget every mark</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="50"/>
        <source>Save refined search…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="50"/>
        <source>Keep this search and its marks in a file, to run it on other imagery later</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="54"/>
        <source>Run saved search…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/marks_panel.py" line="54"/>
        <source>Run a refined search kept in a file on the index chosen above</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>QueryBar</name>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="47"/>
        <source>Folder of the index to search (made with {INDEX_MENU})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="52"/>
        <source>index folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="58"/>
        <source>Choose an index folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="61"/>
        <source>Index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="68"/>
        <source>type what you are looking for</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="70"/>
        <source>Describe the scene in words, e.g. &quot;a baseball field next to a parking lot&quot;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="73"/>
        <source>Search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="74"/>
        <source>Search now (a search still running is replaced)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="75"/>
        <source>Cancel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="76"/>
        <source>Stop the running search</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="88"/>
        <source>top </source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="89"/>
        <source>How many tiles a search returns</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="94"/>
        <source> tiles on map</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="95"/>
        <source>How many of a query&apos;s best tiles are added to the map as raster layers (0: footprints only)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="102"/>
        <source>current map extent only</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="103"/>
        <source>Only tiles inside what the map shows now (its extent and CRS are sent)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/query_bar.py" line="116"/>
        <source>CACH index folder</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ResultActions</name>
    <message>
        <location filename="../cach_qgis/results_view.py" line="158"/>
        <source>+ More like this</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="159"/>
        <source>Use the selected tile as an example of what you want (Refine)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="162"/>
        <source>− Less like this</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="163"/>
        <source>Use the selected tile as an example of what you do not want</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="166"/>
        <source>Save footprints…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="167"/>
        <source>Write the result&apos;s footprints to a GeoPackage</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="168"/>
        <source>Clear results</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="169"/>
        <source>Remove the &quot;CACH results&quot; group and all its layers from the layer tree</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="151"/>
        <source>‹ Previous</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="152"/>
        <source>The page of better-ranked tiles before these</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="153"/>
        <source>Next ›</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="154"/>
        <source>The next page: as many tiles again, ranked after these</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>ResultsList</name>
    <message>
        <location filename="../cach_qgis/results_view.py" line="53"/>
        <source>Select a tile to zoom to it; right-click for more (similar tiles, + and −)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="128"/>
        <source>Zoom to tile</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="130"/>
        <source>View tile enlarged</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="131"/>
        <source>Mark right: more like this (+)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="134"/>
        <source>Mark wrong: less like this (−)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="138"/>
        <source>Undo this mark</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/results_view.py" line="139"/>
        <source>Search tiles similar to this one</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>RuntimeBox</name>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="53"/>
        <source>Runtime settings…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="54"/>
        <source>Create the CACH runtime, or choose the Python of an existing one</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="67"/>
        <source>Runtime ready on &lt;b&gt;{device}&lt;/b&gt;</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="67"/>
        <source>Runtime ready; loading the model…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="73"/>
        <source>Starting the CACH runtime…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="75"/>
        <source>The CACH runtime is not running.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_box.py" line="77"/>
        <source>The runtime starts when this panel opens.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>RuntimeClient</name>
    <message>
        <location filename="../cach_qgis/runtime_requests.py" line="114"/>
        <source>Cancelled before it started.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_requests.py" line="165"/>
        <source>&apos;{op}&apos; timed out after {timeout_s:.0f} s.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_requests.py" line="172"/>
        <source>&apos;{op}&apos; did not stop.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="76"/>
        <source>starting runtime: {python} {join} (cwd {cwd})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="140"/>
        <source>runtime not running: &apos;{op}&apos; was not sent</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_requests.py" line="221"/>
        <source>The CACH runtime is not running; run it again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="54"/>
        <source>runtime: {line}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="75"/>
        <source>runtime wrote a non-protocol line: {err}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="100"/>
        <source>runtime: {error_details}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="124"/>
        <source>runtime model loaded: {value}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="132"/>
        <source>runtime model load failed: {error_details}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="138"/>
        <source>The CACH model could not be loaded. {error_text}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_lines.py" line="145"/>
        <source>runtime event {event}: {value}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_client.py" line="116"/>
        <source>runtime ready: version {version}, protocol {protocol}, device {device}, pid {pid}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="243"/>
        <source>The CACH runtime was stopped.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="49"/>
        <source>No CACH runtime found. Create one in Raster ▸ CACH ▸ Runtime settings… ▸ Create runtime…, or set the Python of an existing one there.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="155"/>
        <source>Cannot run the CACH runtime '{python}': {reason}. Choose another one in Raster ▸ CACH ▸ Runtime settings…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="179"/>
        <source>The CACH runtime could not start: it {how}{tail}. Repair it in Raster ▸ CACH ▸ Runtime settings… (Create runtime…).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/runtime_process.py" line="190"/>
        <source>The CACH runtime stopped unexpectedly ({how}{tail}). Run it again; the runtime restarts by itself.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>RuntimeDialog</name>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="409"/>
        <source>CACH: Runtime settings</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="419"/>
        <source>Detect</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="421"/>
        <source>Test runtime</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="423"/>
        <source>Create runtime…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="424"/>
        <source>Create a virtual environment in {data_dir} with the pinned requirements (QGIS&apos;s own Python is not touched).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="461"/>
        <source>Runtime Python</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="463"/>
        <source>Device</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="464"/>
        <source>Runtime to create</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="437"/>
        <source>The Python interpreter of the CACH runtime</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="438"/>
        <source>Look for a runtime made by the setup script or from QGIS</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="439"/>
        <source>Start the runtime, load its model and show its device</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="504"/>
        <source>starting…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="510"/>
        <source>{device} — runtime {version}, backbone {backbone}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dialogs.py" line="452"/>
        <source>Which runtime Create runtime… makes; its size is shown below before anything downloads</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>RuntimeInstaller</name>
    <message>
        <location filename="../cach_qgis/runtime_setup.py" line="262"/>
        <source>runtime setup: {message}</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>SearchDock</name>
    <message>
        <location filename="../cach_qgis/dock.py" line="97"/>
        <source>Click a tile on the map with the CACH tile tool to see its captions.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dock.py" line="148"/>
        <source>search panel shown: starting the runtime</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/dock.py" line="400"/>
        <source>The footprints could not be saved ({err}). Choose another file or folder.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>TileTool</name>
    <message>
        <location filename="../cach_qgis/maptool.py" line="83"/>
        <source>Choose an index in the CACH search panel first, or make one with {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/maptool.py" line="104"/>
        <source>No indexed tile here. Click on a raster you indexed, or index it with {INDEX_MENU}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/maptool.py" line="58"/>
        <source>Mark this tile right (more like this)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/maptool.py" line="61"/>
        <source>Mark this tile wrong (less like this)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/maptool.py" line="65"/>
        <source>Captions and similar tiles</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>TileViewer</name>
    <message>
        <location filename="../cach_qgis/viewer.py" line="44"/>
        <source>Open image</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/viewer.py" line="45"/>
        <source>Open the source image in your system&apos;s image viewer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/viewer.py" line="56"/>
        <source>CACH: result #{rank}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/viewer.py" line="59"/>
        <source>The image cannot be read.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../cach_qgis/viewer.py" line="63"/>
        <source>&lt;b&gt;#{rank}&lt;/b&gt; {name} — {match}</source>
        <translation type="unfinished"></translation>
    </message>
</context>
</TS>
