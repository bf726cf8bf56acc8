package io.strmspark.fs;

/**
 * Hadoop's checksummed local {@code FileSystem} ({@code fs.file.impl}) over {@link
 * NioRawLocalFileSystem}.
 */
public class LocalFileSystem extends org.apache.hadoop.fs.LocalFileSystem {
  public LocalFileSystem() {
    super(new NioRawLocalFileSystem());
  }
}
